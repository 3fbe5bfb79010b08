import keras
import numpy as np
import pytest

import bnkeras
from tests import harness


@pytest.mark.parametrize(
    "make",
    [
        keras.layers.BatchNormalization,
        bnkeras.BatchNormalization,
        lambda **kw: bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, **kw),
        lambda **kw: bnkeras.GhostBatchNormalization(virtual_batch_size=8, **kw),
        lambda **kw: bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, virtual_batch_size=8, **kw),
        lambda **kw: keras.layers.BatchNormalization(
            renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}, **kw
        ),
    ],
    ids=["keras", "bn", "renorm", "ghost", "renorm_ghost", "keras_renorm"],
)
def test_moving_statistics_become_true_averages(make, rng):
    inputs = keras.Input((6, 6, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = make(name="bn")(features)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inputs, outputs)
    bn = model.get_layer("bn")
    harness.randomize_statistics(bn, rng)
    trainable_before = [np.asarray(w).copy() for w in model.trainable_weights]
    others_before = {
        w.path: np.asarray(w).copy()
        for w in bn.weights
        if w.name not in ("moving_mean", "moving_variance", "moving_stddev")
    }
    batches = [
        harness.random_batch(rng, (16, 6, 6, 3), mean=float(i), std=1.0 + i) for i in range(5)
    ]
    used = bnkeras.recalibrate_batchnorm(model, [(b, None) for b in batches], num_batches=4)
    assert used == 4
    feature_model = keras.Model(inputs, features)
    outs = [np.asarray(feature_model(b), np.float64) for b in batches[:4]]
    if getattr(bn, "virtual_batch_size", None):  # pooled ghost statistics
        means = [np.mean([g.mean((0, 1, 2)) for g in np.split(o, 2)], 0) for o in outs]
        variances = [np.mean([g.var((0, 1, 2)) for g in np.split(o, 2)], 0) for o in outs]
    else:
        means = [o.mean((0, 1, 2)) for o in outs]
        variances = [o.var((0, 1, 2)) for o in outs]
    np.testing.assert_allclose(bn.moving_mean, np.mean(means, 0), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance, np.mean(variances, 0), atol=1e-4, rtol=1e-4)
    for before, after in zip(trainable_before, model.trainable_weights, strict=True):
        np.testing.assert_array_equal(before, np.asarray(after))
    for w in bn.weights:
        if w.path in others_before:
            np.testing.assert_array_equal(others_before[w.path], np.asarray(w))
    assert bn.momentum == 0.99
    if getattr(bn, "renorm", False):  # Keras's renorm derives moving_variance from it
        np.testing.assert_allclose(
            bn.moving_stddev, np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon), rtol=1e-6
        )


def test_frozen_and_missing_bn(rng):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert bnkeras.recalibrate_batchnorm(model, [harness.random_batch(rng, (4, 3))], 1) == 0
    with pytest.raises(ValueError, match="num_batches=0"):
        bnkeras.recalibrate_batchnorm(model, [], 0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, momentum=0.9),
        lambda: keras.layers.BatchNormalization(
            renorm=True, renorm_clipping={"rmax": 2.0, "rmin": 0.5, "dmax": 1.0}, momentum=0.9
        ),
    ],
    ids=["renorm", "keras_renorm"],
)
def test_renorm_training_continues_from_the_recalibrated_statistics(make, rng):
    # Renorm averages the stddev: the next training step moves the inference stddev
    # sqrt(moving_variance + eps) from the recalibrated value towards the batch's.
    layer = make()
    model = keras.Sequential([keras.Input((5,)), layer])
    harness.randomize_statistics(layer, rng)
    # A trained layer: from its first step on, the moving stddev of both layers is
    # sqrt(moving_variance + eps) (before it, Keras's starts at sqrt(moving_variance)).
    model(harness.random_batch(rng, (32, 5)), training=True)
    batches = [harness.random_batch(rng, (32, 5), std=1.0 + 0.5 * i) for i in range(4)]
    assert bnkeras.recalibrate_batchnorm(model, batches, 4) == 4
    variance = np.mean([b.var(0) for b in batches], 0)
    np.testing.assert_allclose(layer.moving_variance, variance, rtol=1e-5)
    x = harness.random_batch(rng, (32, 5), std=3.0)
    model(x, training=True)
    expected_stddev = 0.9 * np.sqrt(variance + 1e-3) + 0.1 * np.sqrt(x.var(0) + 1e-3)
    np.testing.assert_allclose(
        layer.moving_variance, expected_stddev**2 - 1e-3, rtol=1e-5, atol=1e-6
    )


def test_dataset_error_restores_every_variable(rng):
    layer = bnkeras.BatchNormalization()
    model = keras.Sequential([keras.Input((3,)), layer])
    harness.randomize_statistics(layer, rng)
    before = [np.asarray(w).copy() for w in layer.weights]

    def batches():
        yield harness.random_batch(rng, (8, 3))
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        bnkeras.recalibrate_batchnorm(model, batches(), 5)
    for a, b in zip(before, layer.weights, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert layer.momentum == 0.99 and not layer._recalibrating


@pytest.mark.parametrize(
    "value,message",
    [
        ("10", r"num_batches.*integer.*Received: num_batches='10'"),
        (2.5, r"num_batches.*integer.*Received: num_batches=2\.5"),
        (0, r"num_batches.*>= 1.*Received: num_batches=0"),
        (True, r"Received: num_batches=True"),
    ],
)
def test_invalid_num_batches(value, message, rng):
    model = keras.Sequential([keras.Input((3,)), bnkeras.BatchNormalization()])
    with pytest.raises(ValueError, match=message):
        bnkeras.recalibrate_batchnorm(model, [harness.random_batch(rng, (4, 3))], value)
