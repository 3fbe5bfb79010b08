"""BatchRenormalization's warm-up over a run, ghost batches and bias-corrected statistics."""

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.layers.renorm_schedules import WARMUP, warmup
from tests import harness
from tests.layers import reference


def _with_weights(layer, source, shape):
    """`layer` built for `shape` with the weights of `source` it shares."""
    layer.build(shape)
    values = {w.name: np.asarray(w) for w in source.weights}
    for weight in layer.weights:
        weight.assign(values[weight.name])
    return layer


# --------------------------------------------------------------- warm-up over a run


def test_warmup_over_a_run_keeps_the_papers_fractions():
    assert warmup("rmax", 130_000) == WARMUP["rmax"]
    assert warmup("dmax", 130_000) == WARMUP["dmax"]
    # 5k/130k = 3.8%, 40k/130k = 30.8%, 25k/130k = 19.2% of a 1000-step run.
    assert warmup("rmax", 1000) == bnkeras.LinearRamp(1.0, 3.0, 38, 308)
    assert warmup("dmax", 1000) == bnkeras.LinearRamp(0.0, 5.0, 38, 192)
    # Very short runs still ramp over at least one step.
    assert warmup("dmax", 2) == bnkeras.LinearRamp(0.0, 5.0, 0, 1)
    layer = bnkeras.BatchRenormalization(total_steps=1000, dmax=2.0)
    assert layer.rmax == warmup("rmax", 1000) and layer.dmax == 2.0
    assert bnkeras.BatchRenormalization().rmax == WARMUP["rmax"]


def test_short_run_renormalizes(rng):
    # 40 steps: the absolute warm-up would hold r = 1, d = 0 throughout (plain BN).
    layer = bnkeras.BatchRenormalization(total_steps=40, renorm_momentum=0.9)
    model = keras.Sequential([keras.Input((4,)), layer])
    model.compile(optimizer="sgd", loss="mse")
    x = harness.random_batch(rng, (40 * 8, 4))
    x[::2] *= 3.0  # batches of 8 with different spreads
    model.fit(x, np.zeros_like(x), batch_size=8, epochs=1, shuffle=False, verbose=0)
    assert int(layer.renorm_step) == 40
    assert float(layer._clip_value(layer.rmax, "float32")) == 3.0
    assert float(layer._clip_value(layer.dmax, "float32")) == 5.0
    batch = harness.random_batch(rng, (8, 4), mean=12.0, std=6.0)
    mean, variance = keras.ops.moments(keras.ops.convert_to_tensor(batch), [0])
    r, d = layer._batch_correction()(mean, variance)
    assert np.all(np.abs(harness.to_numpy(r) - 1.0) > 0.05), r
    assert np.all(np.abs(harness.to_numpy(d)) > 0.05), d
    plain = _with_weights(bnkeras.BatchNormalization(), layer, batch.shape)
    assert not np.allclose(
        harness.to_numpy(layer(batch, training=True)),
        harness.to_numpy(plain(batch, training=True)),
        atol=1e-3,
    )


# ------------------------------------------------------------------- ghost batches

GHOST_SHAPES = harness.thinned_off_tensorflow(
    [((16, 3, 3, 4), -1), ((14, 4, 3, 3), 1), ((10, 5), -1)], keep=(1,)
)


def _assert_trains_alike(layer, other, shape, rng, steps=3):
    """Equal training outputs and gradients over `steps` steps, from random weights."""
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    _with_weights(other, layer, shape)
    for _ in range(steps):
        x = harness.random_batch(rng, shape)
        (grads, out), (other_grads, other_out) = (
            harness.training_gradients(layer, x),
            harness.training_gradients(other, x),
        )
        harness.assert_allclose(out, other_out, atol=1e-5)
        for a, b in zip(grads, other_grads, strict=True):
            harness.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("shape,axis", GHOST_SHAPES)
def test_ghost_renorm_with_closed_clips_is_ghost_bn(shape, axis, rng):
    layer = bnkeras.BatchRenormalization(rmax=1.0, dmax=0.0, virtual_batch_size=4, axis=axis)
    ghost = bnkeras.GhostBatchNormalization(virtual_batch_size=4, axis=axis)
    _assert_trains_alike(layer, ghost, shape, rng)
    harness.assert_allclose(layer.moving_mean, ghost.moving_mean, atol=1e-5)


@pytest.mark.parametrize("shape,axis", GHOST_SHAPES)
def test_ghost_renorm_with_one_ghost_batch_is_renorm(shape, axis, rng):
    options = {"rmax": 1.5, "dmax": 0.5, "renorm_momentum": 0.8, "axis": axis}
    layer = bnkeras.BatchRenormalization(virtual_batch_size=shape[0], **options)
    plain = bnkeras.BatchRenormalization(**options)
    _assert_trains_alike(layer, plain, shape, rng)
    for a, b in zip(layer.weights, plain.weights, strict=True):
        harness.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5, err_msg=a.name)


def ghost_renorm_train(x, state, eps, momentum, renorm_momentum, rmax, dmax, size, axis):
    """NumPy: renorm of each ghost batch, statistics updated with the batch mean and
    the size-weighted mean of the ghost stddevs."""
    outputs, stddevs, sizes = [], [], []
    for start in range(0, x.shape[0], size):
        group = x[start : start + size]
        before = dict(state)
        outputs.append(
            reference.renorm_train(group, before, eps, momentum, renorm_momentum, rmax, dmax, axis)
        )
        axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
        stddevs.append(np.sqrt(group.astype(np.float64).var(axes) + eps))
        sizes.append(group.shape[0])
    axes = tuple(a for a in range(x.ndim) if a != axis % x.ndim)
    mean = x.astype(np.float64).mean(axes)
    stddev = np.average(stddevs, axis=0, weights=sizes)
    a = renorm_momentum
    state["renorm_mean"] = a * state["renorm_mean"] + (1 - a) * mean
    state["renorm_stddev"] = a * state["renorm_stddev"] + (1 - a) * stddev
    state["moving_mean"] = momentum * state["moving_mean"] + (1 - momentum) * mean
    # Keras's moving_stddev rule, as in reference.renorm_train.
    moving_std = state.setdefault("moving_stddev", np.sqrt(state["moving_variance"]))
    state["moving_stddev"] = momentum * moving_std + (1 - momentum) * stddev
    state["moving_variance"] = np.maximum(state["moving_stddev"] ** 2 - eps, 0.0)
    return np.concatenate(outputs)


@pytest.mark.parametrize("shape,axis", GHOST_SHAPES)
def test_ghost_renorm_numpy_reference(shape, axis, rng):
    layer = bnkeras.BatchRenormalization(
        rmax=1.5, dmax=0.5, renorm_momentum=0.8, momentum=0.9, virtual_batch_size=4, axis=axis
    )
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    for i in range(3):
        x = harness.random_batch(rng, shape)
        x[: shape[0] // 2] = x[: shape[0] // 2] * 2.0 + i  # ghost batches that differ
        expected = ghost_renorm_train(x, state, 1e-3, 0.9, 0.8, 1.5, 0.5, 4, axis)
        harness.assert_allclose(layer(x, training=True), expected, atol=1e-5)
    for name in ("moving_mean", "moving_variance", "renorm_mean", "renorm_stddev"):
        harness.assert_allclose(getattr(layer, name), state[name], atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    "check",
    harness.checks_with_torch_xfails(
        dict.fromkeys(
            ["xla_equals_graph", "xla_equals_graph_masked"], harness.TORCH_COMPILE_RENORM_BUG
        )
    ),
)
def test_ghost_renorm_harness(check, tmp_path, rng):
    def make(**kwargs):
        kwargs.setdefault("rmax", 2.0)
        kwargs.setdefault("dmax", 1.0)
        return bnkeras.BatchRenormalization(virtual_batch_size=2, **kwargs)

    # Ghost batches of 2 never span the replicas' halves of the batch: local
    # statistics equal synchronized ones, so the harness's control does not apply.
    harness.run_check(check, make, tmp_path, rng, non_trainable=5, sync_control=False)


# ---------------------------------------------------------------- bias correction


def test_bias_corrected_statistics(rng):
    a = 0.9
    layer = bnkeras.BatchRenormalization(
        rmax=3.0, dmax=5.0, renorm_momentum=a, renorm_bias_correction=True
    )
    shape = (16, 3)
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    plain = _with_weights(bnkeras.BatchNormalization(), layer, shape)
    batches = [harness.random_batch(rng, shape, mean=2.0 * i, std=1.0 + i) for i in range(3)]
    means = [b.astype(np.float64).mean(0) for b in batches]
    stddevs = [np.sqrt(b.astype(np.float64).var(0) + 1e-3) for b in batches]
    # Step 1: no batch averaged yet, plain BN; the first batch replaces the initial values.
    harness.assert_allclose(
        layer(batches[0], training=True), plain(batches[0], training=True), atol=1e-5
    )
    harness.assert_allclose(layer.renorm_mean, means[0], atol=1e-5)
    harness.assert_allclose(layer.renorm_stddev, stddevs[0], atol=1e-5)
    # Step 2: r, d against the first batch; then Adam's (a m1 + m2) / (1 + a).
    state["renorm_mean"], state["renorm_stddev"] = means[0], stddevs[0]
    expected = reference.renorm_train(batches[1], state, 1e-3, 0.99, a, 3.0, 5.0)
    harness.assert_allclose(layer(batches[1], training=True), expected, atol=1e-5)
    harness.assert_allclose(layer.renorm_mean, (a * means[0] + means[1]) / (1 + a), atol=1e-5)
    layer(batches[2], training=True)
    weights = np.array([a**2, a, 1.0])
    for name, values in (("renorm_mean", means), ("renorm_stddev", stddevs)):
        harness.assert_allclose(
            getattr(layer, name), np.average(values, axis=0, weights=weights), atol=1e-5
        )
    # Without the correction the initial values still weigh a**3 = 73%.
    biased = bnkeras.BatchRenormalization(rmax=3.0, dmax=5.0, renorm_momentum=a)
    for batch in batches:
        biased(batch, training=True)
    harness.assert_allclose(
        biased.renorm_mean, (1 - a) * np.sum(weights[:, None] * np.array(means), 0), atol=1e-5
    )


def test_bias_correction_in_compiled_fit(rng):
    layer = bnkeras.BatchRenormalization(
        rmax=3.0, dmax=5.0, renorm_momentum=0.5, renorm_bias_correction=True
    )
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer="sgd", loss="mse", jit_compile=True)
    x = harness.random_batch(rng, (4 * 8, 3))
    model.fit(x, np.zeros_like(x), batch_size=8, epochs=1, shuffle=False, verbose=0)
    means = [x[i : i + 8].astype(np.float64).mean(0) for i in range(0, 32, 8)]
    expected = np.average(means, axis=0, weights=[0.125, 0.25, 0.5, 1.0])
    harness.assert_allclose(layer.renorm_mean, expected, atol=1e-5)


# ------------------------------------------------------------ arguments and config

NEW_OPTIONS = [
    {"total_steps": 1000},
    {"total_steps": 500, "dmax": 2.0, "virtual_batch_size": 4},
    {"renorm_bias_correction": True, "rmax": 2.0, "dmax": 1.0},
]


@pytest.mark.parametrize("options", NEW_OPTIONS)
def test_new_options_round_trip(options, tmp_path, rng):
    def make(**kwargs):
        return bnkeras.BatchRenormalization(**options, **kwargs)

    harness.check_config_round_trip(make)
    harness.check_keras_round_trip(make, tmp_path, rng)
    config = make().get_config()
    for key, value in options.items():
        assert config[key] == value


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"total_steps": "10"}, r"total_steps.*integer.*Received: total_steps='10'"),
        ({"total_steps": 0}, r"total_steps.*>= 1.*Received: total_steps=0"),
        (
            {"total_steps": 100, "rmax": 3.0, "dmax": 5.0},
            r"neither `rmax` \(3\.0\) nor `dmax` \(5\.0\).*Received: total_steps=100",
        ),
        ({"virtual_batch_size": 0}, r"virtual_batch_size.*>= 1.*Received: virtual_batch_size=0"),
        ({"virtual_batch_size": 2.5}, r"Received: virtual_batch_size=2\.5"),
        (
            {"renorm_bias_correction": "yes"},
            r"renorm_bias_correction.*Received: renorm_bias_correction='yes'",
        ),
    ],
)
def test_invalid_new_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bnkeras.BatchRenormalization(**kwargs)


def test_ghost_renorm_refuses_the_batch_axis():
    layer = bnkeras.BatchRenormalization(virtual_batch_size=2, axis=0)
    with pytest.raises(ValueError, match=r"cannot normalize over axis 0.*Received: axis=0"):
        layer.build((8, 3))
