"""Writers for the export formats: .keras, SavedModel and ONNX."""

import contextlib
import logging

import tensorflow as tf

# Function attributes that keep a function call out of TensorFlow's inliner. Keras's
# TensorFlow backend runs grouped convolutions (and channels_first 3D convs) through
# `tf.function(jit_compile=True)`, which marks the call with both.
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_noinline")


class ONNXConversionError(RuntimeError):
    """tf2onnx left operations unconverted: the ONNX file would not run."""


def _input_signature(model):
    return [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"input_{i}")
        for i, t in enumerate(model.inputs)
    ]


def write_keras(model, path):
    model.save(path)


def write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


@contextlib.contextmanager
def _quiet_tensorflow_logger():
    """tf2onnx's graph path calls TF1 freezing APIs that log deprecation notices."""
    logger = logging.getLogger("tensorflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def frozen_graph_def(model):
    """(graph_def, input names, output names) of `model`'s inference graph.

    Variables and captured tensors (e.g. the mean and variance that
    `keras.layers.Normalization` keeps as eager tensors) become constants, so the
    graph's only inputs are the model's; functions Keras marks for XLA
    compilation are made inlinable so that their ops get converted.
    """
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    @tf.function
    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    concrete = serve.get_concrete_function(*_input_signature(model))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    for node in graph_def.node:
        for attr in _NO_INLINE_ATTRS:
            node.attr.pop(attr, None)
    for function in graph_def.library.function:
        for attr in _NO_INLINE_ATTRS:
            function.attr.pop(attr, None)
        for node in function.node_def:
            for attr in _NO_INLINE_ATTRS:
                node.attr.pop(attr, None)
    inputs = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outputs = [t.name for t in frozen.outputs]
    return graph_def, inputs, outputs


def _erfc_as_one_minus_erf(ctx, node, name, args):
    """tf2onnx handler: ONNX has Erf but no Erfc (exact GELU uses Erfc)."""
    import numpy as np
    from tf2onnx import utils

    dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.input[0]))
    one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.ones((), dtype))
    node.type = "Erf"
    minus = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name))
    ctx.replace_inputs(minus, [one.output[0], node.output[0]])


# TensorFlow ops tf2onnx 1.17 lacks, mapped onto ONNX ops: {op: (handler, args)}.
_OP_HANDLERS = {"Erfc": (_erfc_as_one_minus_erf, [])}


def unconverted_ops(proto):
    """Node types in an ONNX graph that no ONNX operator set defines."""
    import onnx

    return sorted(
        {
            node.op_type
            for node in proto.graph.node
            if not onnx.defs.has(node.op_type, node.domain or "")
        }
    )


def write_onnx(model, path, opset):
    """Writes `model` as a self-contained ONNX file.

    `model.export(format="onnx")` is not used: in Keras 3.15 it makes the eager
    tensors of `keras.layers.Normalization` extra graph inputs, keeps grouped
    convolutions as unconvertible XLA calls, and needs a float32 dtype policy.
    Raises `ONNXConversionError` when the converter skipped any operation.
    """
    try:
        import tf2onnx
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx") from error

    graph_def, inputs, outputs = frozen_graph_def(model)
    renames = {name: name.split(":")[0] for name in inputs}
    renames.update({name: f"output_{i}" for i, name in enumerate(outputs)})
    with _quiet_tensorflow_logger():
        proto, _ = tf2onnx.convert.from_graph_def(
            graph_def,
            name=model.name,
            input_names=inputs,
            output_names=outputs,
            opset=opset,
            tensors_to_rename=renames,
            custom_op_handlers=dict(_OP_HANDLERS),
        )
    missing = unconverted_ops(proto)
    if missing:
        raise ONNXConversionError(
            f"tf2onnx could not convert {', '.join(missing)} (opset {opset}); the ONNX file "
            "would not run, so it was not written."
        )
    import onnx

    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
