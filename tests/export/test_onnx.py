"""The ONNX writer: self-contained graphs, grouped convolutions, loud failures."""

import keras
import numpy as np
import onnxruntime
import pytest
import tensorflow as tf

from bnkeras.export import writers
from bnkeras.export.fold import fold_batchnorm
from bnkeras.export.writers import ONNXConversionError, write_onnx
from tests import harness


def _run(path, inputs):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == len(inputs)
    return session.run(None, {s.name: x for s, x in zip(session.get_inputs(), inputs, strict=True)})


def _normalization_model():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Normalization(mean=[0.5, 0.4, 0.3], variance=[0.1, 0.2, 0.3])(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(4, 3)(x))


def _wide_normalization_model():
    """Mean and variance large enough to be kept out of the TensorFlow graphs."""
    rng = np.random.default_rng(0)
    inputs = keras.Input((4, 4, 300))
    x = keras.layers.Normalization(mean=rng.normal(size=300), variance=rng.uniform(0.5, 2, 300))
    return keras.Model(inputs, keras.layers.Conv2D(4, 1)(x(inputs)))


def _grouped_conv_model():
    inputs = keras.Input((8, 8, 4))
    return keras.Model(inputs, keras.layers.Conv2D(4, 3, groups=2)(inputs))


@pytest.mark.parametrize(
    "build", [_normalization_model, _wide_normalization_model, _grouped_conv_model]
)
def test_onnx_is_self_contained_and_matches(build, tmp_path, rng):
    model = build()
    x = harness.random_batch(rng, (3, *model.inputs[0].shape[1:]))
    write_onnx(model, tmp_path / "model.onnx", 17)
    (got,) = _run(tmp_path / "model.onnx", [x])  # one graph input: the model's
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=1e-5)


def test_folded_model_with_preprocessing_depthwise_and_grouped_convs(tmp_path, rng):
    inputs = keras.Input((None, None, 4))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Normalization(mean=[0.1, 0.2, 0.3, 0.4], variance=[1.0, 2.0, 3.0, 4.0])(x)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, groups=4, use_bias=False)(x))
    x = keras.layers.BatchNormalization()(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            harness.randomize_statistics(layer, rng)
    folded = fold_batchnorm(model).model
    write_onnx(folded, tmp_path / "model.onnx", 17)
    for size in (9, 16):
        x = rng.uniform(0, 255, (2, size, size + 3, 4)).astype("float32")
        (got,) = _run(tmp_path / "model.onnx", [x])
        np.testing.assert_allclose(got, model(x, training=False), atol=1e-4, rtol=1e-4)


def test_unconvertible_op_fails_loudly_and_writes_nothing(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(tf.math.bessel_i0e)(inputs))
    with pytest.raises(ONNXConversionError, match="could not convert BesselI0e"):
        write_onnx(model, tmp_path / "model.onnx", 17)
    assert not (tmp_path / "model.onnx").exists()


def test_exact_gelu_converts(tmp_path, rng):
    """TensorFlow's exact GELU uses Erfc, which tf2onnx lacks (ConvNeXt's blocks)."""
    import onnx

    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Activation("gelu")(keras.layers.Dense(4)(inputs)))
    write_onnx(model, tmp_path / "model.onnx", 17)
    assert "Erf" in {n.op_type for n in onnx.load(tmp_path / "model.onnx").graph.node}
    x = harness.random_batch(rng, (3, 5))
    (got,) = _run(tmp_path / "model.onnx", [x])
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=1e-5)


def test_failing_optimizer_is_skipped(tmp_path, rng, monkeypatch, caplog):
    """Optimizing in place, a failing tf2onnx optimizer (MobileNetV3 breaks
    optimize_transpose) leaves a broken graph: converted again, without it."""
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer

    def fail(self, graph):
        raise ValueError("max() arg is an empty sequence")

    monkeypatch.setattr(TransposeOptimizer, "_optimize", fail)
    model = _grouped_conv_model()
    write_onnx(model, tmp_path / "model.onnx", 17)
    assert "Failed to apply optimize_transpose" in caplog.text  # tf2onnx skipped it
    x = harness.random_batch(rng, (3, 8, 8, 4))
    (got,) = _run(tmp_path / "model.onnx", [x])
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=1e-5)


def test_model_above_the_protobuf_limit_keeps_its_weights_beside_it(tmp_path, rng, monkeypatch):
    monkeypatch.setattr(writers, "_MAX_PROTO_BYTES", 1000)
    model = _wide_normalization_model()
    write_onnx(model, tmp_path / "model.onnx", 17)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert (tmp_path / "model.onnx.data").stat().st_size > 300 * 4 * 4  # the kernel at least
    x = harness.random_batch(rng, (3, 4, 4, 300))
    (got,) = _run(tmp_path / "model.onnx", [x])
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=1e-5)


def _node_protos(proto):
    """The nodes of an ONNX model without their generated names: op, attributes, and
    each input as the position of its producer (or the initializer's values)."""
    producers = {out: i for i, node in enumerate(proto.graph.node) for out in node.output}
    weights = {w.name: w.raw_data or bytes(str(w), "utf8") for w in proto.graph.initializer}
    nodes = []
    for node in proto.graph.node:
        inputs = [producers.get(name, weights.get(name, name)) for name in node.input]
        nodes.append((node.op_type, inputs, [a.SerializeToString() for a in node.attribute]))
    return nodes


def test_in_place_optimizers_make_the_graph_tf2onnx_makes(rng):
    """bnkeras runs tf2onnx's optimizers in place and writes the node protos once, when
    the model is made: the model is the one tf2onnx's own `optimize_graph` makes."""
    from tf2onnx import optimizer

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    y = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Concatenate()([keras.layers.Add()([x, y]), keras.layers.MaxPooling2D(1)(x)])
    x = keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x))
    model = fold_batchnorm(keras.Model(inputs, x)).model
    ours = writers._model_proto(writers._optimized(model, 17), "m")
    theirs = optimizer.optimize_graph(writers._tf2onnx_graph(model, 17)).make_model("m")
    assert _node_protos(ours) == _node_protos(theirs)
    assert len(ours.graph.node) < 12  # optimized: transposes folded away
