import keras
import numpy as np
import pytest

import bnkeras
from tests import harness
from tests.layers import reference
from tests.layers.test_batch_normalization import SHAPES, assert_matches_keras


def make(**kwargs):
    kwargs.setdefault("rmax", 3.0)
    kwargs.setdefault("dmax", 5.0)
    return bnkeras.BatchRenormalization(**kwargs)


COMPILED_GRADIENTS = {
    "xla_equals_graph": harness.TORCH_COMPILE_RENORM_BUG,
    "xla_equals_graph_masked": harness.TORCH_COMPILE_RENORM_BUG,
}


@pytest.mark.parametrize("check", harness.checks_with_torch_xfails(COMPILED_GRADIENTS))
def test_harness(check, tmp_path, rng):
    # moving_mean, moving_variance, renorm_mean, renorm_stddev, renorm_step
    harness.run_check(check, make, tmp_path, rng, non_trainable=5)


def test_harness_with_the_warmup_schedules(tmp_path, rng):
    """The checks the clipping schedules take part in (serialized, restored with the
    step, computed inside fit, XLA and a replica context); the rest of the harness
    does not depend on how rmax and dmax are given."""
    make_scheduled = lambda **kw: bnkeras.BatchRenormalization(**kw)  # noqa: E731
    harness.check_config_round_trip(make_scheduled)
    harness.check_keras_round_trip(make_scheduled, tmp_path, rng)
    harness.check_fit_step(make_scheduled, rng)
    harness.check_mixed_precision(make_scheduled, rng)
    if harness.ON_TENSORFLOW:
        harness.check_synchronized(make_scheduled, rng)
    if harness.ON_TORCH:
        pytest.xfail(harness.TORCH_COMPILE_RENORM_BUG)
    harness.check_xla_fit(make_scheduled, rng)
    harness.check_xla_equals_graph(make_scheduled, rng)


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_numpy_reference(shape, axis, rng):
    layer = make(axis=axis, rmax=1.5, dmax=0.5, momentum=0.9, renorm_momentum=0.8)
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    for _ in range(4):
        x = harness.random_batch(rng, shape)
        expected = reference.renorm_train(x, state, 1e-3, 0.9, 0.8, 1.5, 0.5, axis)
        harness.assert_allclose(layer(x, training=True), expected, atol=1e-5)
        harness.assert_allclose(
            layer(x, training=False), reference.bn_infer(x, state, 1e-3, axis), atol=1e-5
        )
    for name in ("moving_mean", "moving_variance", "renorm_mean", "renorm_stddev"):
        harness.assert_allclose(getattr(layer, name), state[name], atol=1e-5, err_msg=name)
    assert int(layer.renorm_step) == 4


@pytest.mark.parametrize("shape,axis", SHAPES[::2])
@pytest.mark.parametrize("rmax,dmax", [(3.0, 5.0), (1.2, 0.3)])
def test_matches_keras_renorm(shape, axis, rmax, dmax, rng):
    keras_layer = keras.layers.BatchNormalization(
        axis=axis,
        renorm=True,
        renorm_clipping={"rmin": 1 / rmax, "rmax": rmax, "dmax": dmax},
        renorm_momentum=0.9,
    )
    # Keras keeps a separate moving_stddev; ours is sqrt(moving_variance) before the
    # first step (Keras's initial value) and sqrt(moving_variance + epsilon) after.
    original_build = keras_layer.build

    def build(input_shape):
        original_build(input_shape)
        harness.randomize_statistics(keras_layer, rng)
        keras_layer.moving_stddev.assign(np.sqrt(np.asarray(keras_layer.moving_variance)))
        keras_layer.randomize = False

    keras_layer.build = build
    assert_matches_keras(
        make(axis=axis, rmax=rmax, dmax=dmax, renorm_momentum=0.9), keras_layer, shape, rng, steps=4
    )


@pytest.mark.parametrize("shape", [(8, 4, 4, 3), (16, 3)])
def test_matches_keras_renorm_with_shifting_inputs(shape, rng):
    """From Keras's initial state, with inputs whose mean and scale move every step
    (step k draws from N(2k, (0.3 + k)^2)), so that r and d are clipped."""
    keras_layer = keras.layers.BatchNormalization(
        renorm=True,
        renorm_clipping={"rmin": 1 / 3.0, "rmax": 3.0, "dmax": 5.0},
        renorm_momentum=0.9,
        momentum=0.9,
    )
    keras_layer.randomize = False  # both start from the initializers
    layer = make(renorm_momentum=0.9, momentum=0.9)

    def draw(step):
        return rng.normal(2.0 * step, 0.3 + step, shape).astype("float32")

    assert_matches_keras(layer, keras_layer, shape, rng, steps=5, draw=draw)
    for name in ("renorm_mean", "renorm_stddev"):
        harness.assert_allclose(
            getattr(layer, name), getattr(keras_layer, name), atol=1e-5, err_msg=name
        )


def test_warmup_starts_as_batch_normalization(rng):
    # The paper's warm-up holds rmax=1, dmax=0 for 5k steps: training is plain BN
    # (the moving statistics differ: renorm averages the stddev, BN the variance).
    layer = bnkeras.BatchRenormalization()
    plain = bnkeras.BatchNormalization()
    shape = (8, 4, 4, 3)
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    plain.build(shape)
    plain.set_weights(layer.get_weights()[:4])
    for _ in range(3):
        x = harness.random_batch(rng, shape)
        harness.assert_allclose(layer(x, training=True), plain(x, training=True), atol=1e-5)
    harness.assert_allclose(layer.moving_mean, plain.moving_mean, atol=1e-6)


def test_warmup_schedule_values():
    rmax, dmax = (
        bnkeras.LinearRamp(1.0, 3.0, 5000, 40000),
        bnkeras.LinearRamp(0.0, 5.0, 5000, 25000),
    )
    steps = np.array([0, 5000, 15000, 25000, 40000, 90000])
    harness.assert_allclose(
        [float(rmax(s)) for s in steps], [1, 1, 1 + 2 * 10 / 35, 1 + 2 * 20 / 35, 3, 3], rtol=1e-6
    )
    harness.assert_allclose([float(dmax(s)) for s in steps], [0, 0, 2.5, 5, 5, 5], rtol=1e-6)
    layer = bnkeras.BatchRenormalization()
    assert layer.rmax == rmax and layer.dmax == dmax


def test_schedule_follows_the_step_and_survives_save_load(tmp_path, rng):
    ramp = bnkeras.LinearRamp(1.0, 2.0, 1, 3)
    layer = make(rmax=ramp, dmax=bnkeras.LinearRamp(0.0, 1.0, 0, 2))
    model = keras.Sequential([keras.Input((3,)), layer])
    for _ in range(2):
        model(harness.random_batch(rng, (8, 3)), training=True)
    assert int(layer.renorm_step) == 2
    assert float(layer._clip_value(layer.rmax, "float32")) == pytest.approx(1.5)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    norm = loaded.layers[0]
    assert int(norm.renorm_step) == 2
    assert norm.rmax == ramp
    x = harness.random_batch(rng, (8, 3))
    harness.assert_allclose(model(x, training=True), loaded(x, training=True), atol=1e-6)
    assert int(norm.renorm_step) == 3


def test_keras_learning_rate_schedule_is_accepted(tmp_path, rng):
    schedule = keras.optimizers.schedules.PolynomialDecay(1.0, 10, end_learning_rate=2.0)
    layer = make(rmax=schedule)
    config = layer.get_config()
    clone = bnkeras.BatchRenormalization.from_config(config)
    assert isinstance(clone.rmax, keras.optimizers.schedules.PolynomialDecay)
    clone(harness.random_batch(rng, (4, 3)), training=True)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"rmax": 0.5}, r"rmax.*Received: rmax=0\.5"),
        ({"dmax": -1.0}, r"dmax.*Received: dmax=-1\.0"),
        ({"rmax": "cosine"}, r"Unknown schedule for `rmax`.*'warmup'.*Received: rmax='cosine'"),
        ({"dmax": "paper"}, r"Unknown schedule for `dmax`.*Received: dmax='paper'"),
        (
            {"rmax": bnkeras.LinearRamp(0.5, 3.0, 0, 10)},
            r"stay >= 1.*Received: rmax=LinearRamp\(initial_value=0\.5",
        ),
        ({"renorm_momentum": 1.5}, r"renorm_momentum.*Received: renorm_momentum=1\.5"),
        ({"momentum": 2}, r"Received: momentum=2\.0"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bnkeras.BatchRenormalization(**kwargs)


def test_invalid_ramp():
    with pytest.raises(ValueError, match=r"end_step.*>= 11.*Received: end_step=10"):
        bnkeras.LinearRamp(1.0, 3.0, 10, 10)
