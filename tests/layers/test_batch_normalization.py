import keras
import numpy as np
import pytest

import bnkeras
from tests import harness
from tests.layers import reference

# (input shape, axis): every rank 2-5, channels_last and channels_first (two of
# them off TensorFlow: rank 2 channels-last, rank 4 channels-first).
LAYOUTS = [
    ((16, 5), -1),
    ((8, 6, 3), -1),
    ((8, 3, 6), 1),
    ((6, 5, 5, 4), -1),
    ((6, 4, 5, 5), 1),
    ((4, 3, 4, 4, 2), -1),
    ((4, 2, 3, 4, 4), 1),
]
SHAPES = harness.thinned_off_tensorflow(LAYOUTS, keep=(0, 4))


@pytest.mark.parametrize("check", harness.CHECKS)
def test_harness(check, tmp_path, rng):
    harness.run_check(check, lambda **kw: bnkeras.BatchNormalization(**kw), tmp_path, rng)


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_numpy_reference(shape, axis, rng):
    layer = bnkeras.BatchNormalization(axis=axis, momentum=0.9, epsilon=1e-3)
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    for _ in range(3):
        x = harness.random_batch(rng, shape)
        harness.assert_allclose(
            layer(x, training=True), reference.bn_train(x, state, 1e-3, 0.9, axis), atol=1e-5
        )
        harness.assert_allclose(
            layer(x, training=False), reference.bn_infer(x, state, 1e-3, axis), atol=1e-5
        )
    harness.assert_allclose(layer.moving_mean, state["moving_mean"], atol=1e-6)
    harness.assert_allclose(layer.moving_variance, state["moving_variance"], atol=1e-5)


def assert_matches_keras(layer, keras_layer, shape, rng, steps=3, atol=1e-5, draw=None):
    """Outputs, moving statistics and gradients equal Keras's over several steps;
    `draw(step)` gives each step's input (default: `harness.random_batch`)."""
    layer.build(shape)
    keras_layer.build(shape)
    if getattr(keras_layer, "randomize", True):
        harness.randomize_statistics(keras_layer, rng)
    by_name = {w.name: w for w in keras_layer.weights}
    for w in layer.weights:
        if w.name in by_name:
            w.assign(by_name[w.name])
    for step in range(steps):
        x = harness.random_batch(rng, shape) if draw is None else draw(step)
        grads, y = harness.training_gradients(layer, x)
        keras_grads, keras_y = harness.training_gradients(keras_layer, x)
        harness.assert_allclose(y, keras_y, atol=atol)
        for g, k in zip(grads, keras_grads, strict=True):
            harness.assert_allclose(g, k, atol=atol, rtol=1e-5)
        harness.assert_allclose(layer(x, training=False), keras_layer(x, training=False), atol=atol)
    harness.assert_allclose(layer.moving_mean, keras_layer.moving_mean, atol=atol)
    harness.assert_allclose(layer.moving_variance, keras_layer.moving_variance, atol=atol)


@pytest.mark.parametrize("shape,axis", SHAPES)
def test_matches_keras(shape, axis, rng):
    assert_matches_keras(
        bnkeras.BatchNormalization(axis=axis),
        keras.layers.BatchNormalization(axis=axis),
        shape,
        rng,
    )


@pytest.mark.parametrize("center,scale", [(False, True), (True, False), (False, False)])
def test_matches_keras_without_center_or_scale(center, scale, rng):
    assert_matches_keras(
        bnkeras.BatchNormalization(center=center, scale=scale),
        keras.layers.BatchNormalization(center=center, scale=scale),
        (6, 5, 5, 4),
        rng,
    )


def test_masking_matches_keras(rng):
    x = harness.random_batch(rng, (4, 7, 3))
    mask = keras.ops.convert_to_tensor(rng.random((4, 7)) > 0.3)
    ours, theirs = bnkeras.BatchNormalization(), keras.layers.BatchNormalization()
    harness.assert_allclose(
        ours(x, training=True, mask=mask), theirs(x, training=True, mask=mask), atol=1e-5
    )
    harness.assert_allclose(ours.moving_variance, theirs.moving_variance, atol=1e-6)


@pytest.mark.parametrize("kind", ["bn", "masked", "ghost"])
def test_float64_layer_stays_float64(kind, rng):
    """A float64 layer computes in float64 (1e-12 of the float64 reference): plain,
    masked (the weighted moments) and ghost BN (ghost batches of 3, 3 and 2). Keras's
    type promotion turns float64 into float32 off TensorFlow, so some keras.ops
    (mean, divide_no_nan, segment_sum) compute float64 in float32 on torch; bnkeras
    calls torch for those there."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            pytest.skip("JAX without jax_enable_x64 has no float64")
    options = {"dtype": "float64", "momentum": 0.9}
    if kind == "ghost":
        layer = bnkeras.GhostBatchNormalization(virtual_batch_size=3, **options)
    else:
        layer = bnkeras.BatchNormalization(**options)
    x = rng.normal(size=(8, 3)) * 1e3 + 1e4  # float32 would be off by ~1e-7 relative
    layer.build(x.shape)
    state = reference.layer_state(layer)
    if kind == "masked":
        mask = np.arange(8) % 3 != 1
        out = layer(x, training=True, mask=keras.ops.convert_to_tensor(mask))
        reference.bn_train(x[mask], state, 1e-3, 0.9)
        expected = reference.normalize(
            x, x[mask].mean(0), x[mask].var(0), state["gamma"], state["beta"], 1e-3, -1
        )
    else:
        out = layer(x, training=True)
        if kind == "ghost":
            expected = reference.ghost_train(x, state, 1e-3, 0.9, 3)
        else:
            expected = reference.bn_train(x, state, 1e-3, 0.9)
    assert keras.backend.standardize_dtype(out.dtype) == "float64"
    harness.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    harness.assert_allclose(layer.moving_mean, state["moving_mean"], rtol=1e-12)
    harness.assert_allclose(layer.moving_variance, state["moving_variance"], rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"momentum": 1.0}, r"momentum.*\[0\.0, 1\.0\).*Received: momentum=1\.0"),
        ({"momentum": -0.1}, r"Received: momentum=-0\.1"),
        ({"epsilon": 0}, r"epsilon.*Received: epsilon=0\.0"),
        ({"epsilon": -1e-3}, r"Received: epsilon=-0\.001"),
        ({"axis": "last"}, r"axis.*integer.*Received: axis='last'"),
        ({"center": "yes"}, r"Received: center='yes'"),
    ],
)
def test_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bnkeras.BatchNormalization(**kwargs)


@pytest.mark.parametrize("axis", [4, -5])
def test_axis_out_of_range(axis):
    with pytest.raises(ValueError, match=rf"rank 4.*-4 to 3.*Received: axis={axis}"):
        bnkeras.BatchNormalization(axis=axis)(np.zeros((2, 3, 3, 2), "float32"))


def test_undefined_channel_size():
    with pytest.raises(ValueError, match=r"undefined.*Received: axis=-1"):
        bnkeras.BatchNormalization()(keras.Input((None, None, None)))


def _graph_ops(layer, spec, training):
    import tensorflow as tf

    fn = tf.function(lambda t: layer(t, training=training)).get_concrete_function(spec)
    return {op.type for op in fn.graph.get_operations()}


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize(
    "make",
    [
        bnkeras.BatchNormalization,
        lambda: bnkeras.BatchRenormalization(rmax=3.0, dmax=5.0),
        lambda: bnkeras.GhostBatchNormalization(virtual_batch_size=4),
    ],
)
def test_fused_kernel_is_used_for_channels_last_images(make, training):
    harness.tensorflow_only("the fused kernel is TensorFlow's")
    import tensorflow as tf

    layer = make()
    ops = _graph_ops(layer, tf.TensorSpec((8, 5, 5, 3)), training)
    assert "FusedBatchNormV3" in ops
    # The general path has no fused op (masks, other layouts).
    assert "FusedBatchNormV3" not in _graph_ops(make(), tf.TensorSpec((8, 6, 3)), training)


def test_single_value_per_channel(rng):
    """n == 1: the kernel's Bessel-corrected variance would divide by zero; Keras gives 0."""
    x = harness.random_batch(rng, (1, 1, 1, 3))
    ours, theirs = bnkeras.BatchNormalization(), keras.layers.BatchNormalization()
    harness.assert_allclose(ours(x, training=True), theirs(x, training=True), atol=1e-6)
    harness.assert_allclose(ours.moving_variance, theirs.moving_variance, atol=1e-7)
