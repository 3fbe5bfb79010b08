"""Writers for the export formats: .keras, SavedModel and ONNX."""

import logging
from pathlib import Path

import tensorflow as tf

from bnkeras import _compat
from bnkeras.errors import Error

# Constants above this size stay out of the TensorFlow graphs of the ONNX conversion
# (tf2onnx's own threshold); smaller ones may be shapes that Grappler needs to see.
_LARGE_CONSTANT_BYTES = 1000
_ZEROS = "/bnkeras_zeros"  # name suffix of the constants behind the weights' stand-ins
_MAX_PROTO_BYTES = 2**31 - 1  # protobuf's limit for one message


class ONNXConversionError(Error, RuntimeError):
    """tf2onnx left operations unconverted: the ONNX file would not run."""


def _input_signature(model):
    return [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"input_{i}")
        for i, t in enumerate(model.inputs)
    ]


def inference_function(model, signature=None):
    """`model(inputs, training=False)` as a ConcreteFunction traced for `signature`
    (default: each model input with a run-time batch, named `input_<i>`); its first
    `len(model.inputs)` inputs are the model's, the rest captured variables."""

    @tf.function
    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    return serve.get_concrete_function(*(signature or _input_signature(model)))


def write_keras(model, path):
    model.save(path)


def write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


def frozen_graph_def(model):
    """(graph_def, input names, output names) of `model`'s inference graph.

    Variables and captured tensors (e.g. the mean and variance that
    `keras.layers.Normalization` keeps as eager tensors) become constants, so the
    graph's only inputs are the model's; functions Keras marks for XLA
    compilation are made inlinable so that their ops get converted.
    """
    concrete = inference_function(model)
    graph_def = _compat.freeze_graph_def(concrete)
    _compat.make_inlinable(graph_def)
    inputs = [t.name for t in concrete.inputs[: len(model.inputs)]]  # the rest are captures
    return graph_def, inputs, [t.name for t in concrete.outputs]


def _split_weights(graph_def):
    """(graph_def with a stand-in for each large constant, {name: tensor content}).

    Grappler and each TensorFlow graph import copy the weights several times over
    (Grappler alone took 1.1 GB for ResNet50); tf2onnx takes the contents from the
    dict instead (its `large_model` path). The stand-in is a PlaceholderWithDefault
    of zeros stored without values: Grappler folds nothing through it, and unlike
    for a Placeholder it allocates no zero tensor of the full size as a fake input.
    """
    light, contents = tf.compat.v1.GraphDef(), {}
    light.versions.CopyFrom(graph_def.versions)
    light.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        is_const = node.op == "Const" and "value" in node.attr  # `attr[...]` would add it
        content = node.attr["value"].tensor.tensor_content if is_const else b""
        if len(content) <= _LARGE_CONSTANT_BYTES:
            light.node.add().CopyFrom(node)
            continue
        contents[node.name] = content
        tensor = node.attr["value"].tensor
        zeros = light.node.add(name=node.name + _ZEROS, op="Const")
        zeros.attr["dtype"].CopyFrom(node.attr["dtype"])
        zeros.attr["value"].tensor.dtype = tensor.dtype
        zeros.attr["value"].tensor.tensor_shape.CopyFrom(tensor.tensor_shape)
        stand_in = light.node.add(name=node.name, op="PlaceholderWithDefault", input=[zeros.name])
        stand_in.attr["dtype"].CopyFrom(node.attr["dtype"])
        stand_in.attr["shape"].shape.CopyFrom(tensor.tensor_shape)
    return light, contents


def _restore_constants(graph_def, names):
    """`graph_def` with the stand-ins of `_split_weights` as constants without contents."""
    restored = tf.compat.v1.GraphDef()
    restored.versions.CopyFrom(graph_def.versions)
    restored.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name.endswith(_ZEROS) and node.name[: -len(_ZEROS)] in names:
            continue
        copy = restored.node.add()
        copy.CopyFrom(node)
        if node.name in names and node.op == "PlaceholderWithDefault":
            copy.op = "Const"
            del copy.input[:]
            copy.attr["value"].tensor.dtype = node.attr["dtype"].type
            copy.attr["value"].tensor.tensor_shape.CopyFrom(copy.attr.pop("shape").shape)
    return restored


def _tf2onnx_graph(model, opset):
    """tf2onnx's graph of `model`, before its optimizers.

    `tf2onnx.convert.from_graph_def` would also run a TF1 freeze whose result it
    discards, and import the whole GraphDef, weights included, twice.
    """
    import tf2onnx

    graph_def, inputs, outputs = frozen_graph_def(model)
    graph_def, contents = _split_weights(graph_def)
    renames = {name: name.split(":")[0] for name in inputs}
    renames.update({name: f"output_{i}" for i, name in enumerate(outputs)})
    with tf.Graph().as_default() as tf_graph:
        graph_def = tf2onnx.tf_loader.tf_optimize(inputs, outputs, graph_def)
        graph_def = _restore_constants(graph_def, contents)
        tf.import_graph_def(graph_def, name="")
        del graph_def
        graph = tf2onnx.tfonnx.process_tf_graph(
            tf_graph,
            continue_on_error=True,
            opset=opset,
            input_names=inputs,
            output_names=outputs,
            const_node_values=contents,
            tensors_to_rename=renames,
            custom_op_handlers=dict(_OP_HANDLERS),
        )
    del contents
    _compact(graph)  # frees the weights the op handlers replaced (e.g. transposed kernels)
    return graph


def _optimized(model, opset):
    """tf2onnx's optimized graph of `model`.

    By default tf2onnx copies the whole graph, weights included, before each of its
    optimizers so that a failing one can be skipped: the copies made the optimizers
    the peak of the export. Here they run in place; when one fails (e.g.
    optimize_transpose on MobileNetV3's hard sigmoid), the graph is half rewritten,
    so the model is converted again and optimized without it. Each optimizer also
    rewrote every node's proto, weights included, after it ran (a third of the
    conversion's time); here the protos are written once, when the model is made.
    """
    from tf2onnx import optimizer

    optimizers = _compat.tf2onnx_optimizers()
    if optimizers is None:  # tf2onnx changed: its default way
        return optimizer.optimize_graph(_tf2onnx_graph(model, opset))
    while True:
        graph, failed = _tf2onnx_graph(model, opset), []
        in_place = {name: _in_place(opt, name, failed) for name, opt in optimizers.items()}
        try:
            return optimizer.optimize_graph(graph, catch_errors=False, optimizers=in_place)
        except Exception:
            if not failed:
                raise
            # Worded and logged as tf2onnx does, so that it goes with the converter's output.
            logging.getLogger("tf2onnx.optimizer").warning(
                "Failed to apply %s", failed[0], exc_info=True
            )
        del graph, optimizers[failed[0]]


def _in_place(factory, name, failed):
    """tf2onnx optimizer class `factory` that leaves the node protos to `make_graph`
    and appends `name` to `failed` when it raises."""

    class InPlace(factory):
        def optimize(self, graph, iteration):
            try:
                with _compat.tf2onnx_protos_written_once(graph):
                    return super().optimize(graph, iteration)
            except Exception:
                failed.append(name)
                raise

    return InPlace


def _compact(graph):
    """Gives each node of a tf2onnx graph a fresh copy of its NodeProto.

    A proto rewritten (`update_proto`) keeps, with protobuf's upb backend, the
    attributes it replaced allocated until the whole proto is freed: one more copy
    of the weights each time (2.3 GB for ResNet50 when every optimizer did it).
    Should tf2onnx's private node attributes change, nothing is compacted.
    """
    for node in graph.get_nodes():
        _compat.compact_tf2onnx_node(node)
        for body in (node.get_body_graphs() or {}).values():
            _compact(body)


def _model_proto(graph, name):
    """`graph.make_model(name)` with the weights copied once instead of three times.

    tf2onnx copies each tensor into its node's proto, then into a GraphProto, then
    into the ModelProto; here the model is made with empty tensors in their place,
    and the weights are moved in afterwards, freeing each node's copy.
    """
    import onnx

    weights = {}
    for node in graph.get_nodes():
        value = node.get_attr("value")
        if node.is_const() and value is not None and value.t.ByteSize() > _LARGE_CONSTANT_BYTES:
            weights[node.output[0]] = value.t
            node.set_attr("value", onnx.TensorProto(data_type=value.t.data_type, dims=value.t.dims))
    proto = graph.make_model(name)
    _compact(graph)  # the node protos then no longer hold the weights: only `weights` does
    for tensor in proto.graph.initializer:
        if tensor.name in weights:
            tensor_name = tensor.name
            tensor.CopyFrom(weights.pop(tensor_name))
            tensor.name = tensor_name
    return proto


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
    A model above protobuf's 2 GB limit keeps its weights in `<path>.data` beside
    the file. Raises `ONNXConversionError` when the converter skipped any operation.
    """
    try:
        import tf2onnx  # noqa: F401 - the helpers use it
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx") from error
    import onnx

    graph = _optimized(model, opset)
    proto = _model_proto(graph, f"converted from {model.name}")
    del graph
    missing = unconverted_ops(proto)
    if missing:
        raise ONNXConversionError(
            f"tf2onnx could not convert {', '.join(missing)} (opset {opset}); the ONNX file "
            "would not run, so it was not written."
        )
    path = Path(path)
    if proto.ByteSize() > _MAX_PROTO_BYTES:
        data_path = path.with_name(f"{path.name}.data")
        data_path.unlink(missing_ok=True)  # onnx appends to an existing one
        onnx.save_model(proto, path, save_as_external_data=True, location=data_path.name)
        onnx.checker.check_model(path)
        return
    data = proto.SerializeToString()
    del proto  # checked and written from the bytes: no second copy of the weights
    onnx.checker.check_model(data)
    path.write_bytes(data)
