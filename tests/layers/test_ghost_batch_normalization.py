import keras
import numpy as np
import pytest

import bnkeras
from tests import harness
from tests.layers import reference
from tests.layers.test_batch_normalization import LAYOUTS, SHAPES, assert_matches_keras


def make(**kwargs):
    kwargs.setdefault("virtual_batch_size", 4)
    return bnkeras.GhostBatchNormalization(**kwargs)


@pytest.mark.parametrize("check", harness.CHECKS)
def test_harness(check, tmp_path, rng):
    # Ghost batches of 4 never cross the 2 replicas' 8 examples, so synchronizing
    # changes nothing here; test_ghost_batches_span_replicas covers the other case.
    harness.run_check(check, make, tmp_path, rng, sync_control=False)


BATCHES = [(12, 4), (10, 4), (7, 3), (5, 1)]  # (batch, virtual_batch_size)


@pytest.mark.parametrize(
    "shape,axis,batch,virtual",
    harness.thinned_off_tensorflow(
        [(*layout, *batches) for layout in LAYOUTS for batches in BATCHES],
        # each batch split once, on layouts of ranks 2 to 5
        keep=(0, 4 * 2 + 1, 4 * 4 + 2, 4 * 5 + 3),
    ),
)
def test_numpy_reference(shape, axis, batch, virtual, rng):
    shape = (batch, *shape[1:])
    layer = make(axis=axis, virtual_batch_size=virtual, momentum=0.9)
    layer.build(shape)
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    for _ in range(2):
        x = harness.random_batch(rng, shape)
        expected = reference.ghost_train(x, state, 1e-3, 0.9, virtual, axis)
        harness.assert_allclose(layer(x, training=True), expected, atol=2e-5)
        harness.assert_allclose(
            layer(x, training=False), reference.bn_infer(x, state, 1e-3, axis), atol=1e-5
        )
    harness.assert_allclose(layer.moving_mean, state["moving_mean"], atol=1e-5)
    harness.assert_allclose(layer.moving_variance, state["moving_variance"], atol=1e-5)


@pytest.mark.parametrize("shape,axis", SHAPES[::2])
def test_virtual_batch_at_least_batch_is_batch_normalization(shape, axis, rng):
    assert_matches_keras(
        make(axis=axis, virtual_batch_size=shape[0] + 3),
        keras.layers.BatchNormalization(axis=axis),
        shape,
        rng,
    )


def test_gradients_match_per_ghost_batch_normalization(rng):
    """Gradients equal those of Keras BN applied to each ghost batch separately."""
    x = harness.random_batch(rng, (10, 3, 3, 2))
    ghost = make(virtual_batch_size=4)
    ghost.build(x.shape)
    harness.randomize_statistics(ghost, rng)
    plain = keras.layers.BatchNormalization()
    plain.build(x.shape)
    plain.set_weights(ghost.get_weights())

    ours, _ = harness.training_gradients(ghost, x)
    theirs, _ = harness.training_gradients(
        plain,
        x,
        lambda t: keras.ops.concatenate([plain(t[i : i + 4], training=True) for i in (0, 4, 8)], 0),
    )
    for a, b in zip(ours, theirs, strict=True):
        harness.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_inference_at_any_batch_size(rng):
    layer = make(virtual_batch_size=8)
    layer.build((None, 3))
    harness.randomize_statistics(layer, rng)
    state = reference.layer_state(layer)
    for batch in (1, 3, 8, 13):
        x = harness.random_batch(rng, (batch, 3))
        harness.assert_allclose(layer(x), reference.bn_infer(x, state, 1e-3), atol=1e-5)


def test_weights_interchange_with_batch_normalization(rng):
    def model(norm):
        return keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Conv2D(5, 3), norm])

    ghost, plain = model(make()), model(bnkeras.BatchNormalization())
    harness.randomize_statistics(ghost.layers[1], rng)
    plain.set_weights(ghost.get_weights())
    x = harness.random_batch(rng, (6, 4, 4, 3))
    harness.assert_allclose(ghost(x), plain(x), atol=1e-6)


def test_ghost_batches_span_replicas(rng):
    """With synchronized=True a ghost batch may cross replicas (6 of 16 over 2x8)."""
    harness.check_synchronized(lambda **kw: make(virtual_batch_size=6, **kw), rng)


@pytest.mark.parametrize(
    "value,message",
    [
        (0, r"virtual_batch_size.*>= 1.*Received: virtual_batch_size=0"),
        (-8, r"Received: virtual_batch_size=-8"),
        (2.5, r"integer.*Received: virtual_batch_size=2\.5"),
        ("8", r"integer.*Received: virtual_batch_size='8'"),
        (True, r"integer.*Received: virtual_batch_size=True"),
    ],
)
def test_invalid_virtual_batch_size(value, message):
    with pytest.raises(ValueError, match=message):
        bnkeras.GhostBatchNormalization(virtual_batch_size=value)


def test_batch_axis_is_refused():
    with pytest.raises(ValueError, match=r"batch axis.*Received: axis=0"):
        make(axis=0)(np.zeros((4, 3), "float32"))


@pytest.mark.parametrize("batch", [12, 10, 3, 4])
@pytest.mark.parametrize("inner", [(4, 4, 3), (2, 3, 4, 3)])
def test_dynamic_batch_matches_static_batch(batch, inner, rng):
    """A batch size unknown at trace time (as in fit) takes another fused path:
    whole ghost batches folded into the channels, plus the remainder."""
    harness.tensorflow_only("batch sizes unknown at trace time; JAX traces each size")
    import tensorflow as tf

    x = harness.random_batch(rng, (batch, *inner))
    static, dynamic = make(), make()
    for layer in (static, dynamic):
        layer.build(x.shape)
    harness.randomize_statistics(static, rng)
    dynamic.set_weights(static.get_weights())
    run = tf.function(
        lambda t: dynamic(t, training=True),
        input_signature=[tf.TensorSpec((None, *inner))],
    )
    graph = run.get_concrete_function().graph.as_graph_def()
    ops = {node.op for node in graph.node}
    ops |= {node.op for f in graph.library.function for node in f.node_def}
    assert "FusedBatchNormV3" in ops
    state = reference.layer_state(static)
    expected = reference.ghost_train(x, state, 1e-3, 0.99, 4)
    harness.assert_allclose(run(x), expected, atol=2e-5)
    harness.assert_allclose(static(x, training=True), expected, atol=2e-5)
    harness.assert_allclose(dynamic.moving_mean, state["moving_mean"], atol=1e-5)
    harness.assert_allclose(dynamic.moving_variance, state["moving_variance"], atol=1e-5)

    # Gradients of both paths agree too.
    for a, b in zip(
        harness.training_gradients(dynamic, x, run)[0],
        harness.training_gradients(static, x)[0],
        strict=True,
    ):
        harness.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
