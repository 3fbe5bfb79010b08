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
    ],
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
        if w.name not in ("moving_mean", "moving_variance")
    }
    batches = [
        harness.random_batch(rng, (16, 6, 6, 3), mean=float(i), std=1.0 + i) for i in range(5)
    ]
    used = bnkeras.recalibrate_batchnorm(model, [(b, None) for b in batches], num_batches=4)
    assert used == 4
    feature_model = keras.Model(inputs, features)
    outs = [np.asarray(feature_model(b), np.float64) for b in batches[:4]]
    if isinstance(bn, bnkeras.GhostBatchNormalization):  # pooled ghost statistics
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


def test_frozen_and_missing_bn(rng):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    assert bnkeras.recalibrate_batchnorm(model, [harness.random_batch(rng, (4, 3))], 1) == 0
    with pytest.raises(ValueError, match="num_batches=0"):
        bnkeras.recalibrate_batchnorm(model, [], 0)
