"""The private parts of Keras, TensorFlow, tf2onnx and TensorFlow Datasets that bnkeras
uses, in one place: one function each.

Each function says what it touches and why no public API does it. Each has a test in
tests/test_compat.py that fails with a message naming the attribute and the installed
release when an upgrade removes or changes it. The version cap in setup.cfg
(`keras<3.16`) follows from this list: to lift it, install the new release and run
`pytest tests/test_compat.py`; when it passes, raise the cap (the list, with each use's
test, is in docs/development.md, "Private APIs and version caps").

Releases checked for every function (tests/test_compat.py passed): Keras 3.14.0 and
3.15.1, TensorFlow 2.21.0, tf2onnx 1.17.0, tensorflow-datasets 4.9.10. TensorFlow,
tf2onnx and TFDS are imported inside the functions that use them: this module is
imported by the core (bnkeras.convert), which runs on JAX without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import keras
from keras.src.models.functional import Functional

# ----------------------------------------------------------------------------- Keras


def is_graph_model(model: Any) -> bool:
    """True for a Functional model (a subclass included) or a Sequential model: the
    models whose layer graph Keras can rebuild (`keras.models.clone_model`).

    Touches `keras.src.models.functional.Functional`. Keras exports no public class to
    test this with; `clone_model` itself tests `isinstance(model, Functional)`."""
    return isinstance(model, (Functional, keras.Sequential))


def is_functional(model: Any) -> bool:
    """True for a functional model (a subclass included), not a Sequential one: a model
    with a graph of nodes that `model_nodes` can walk.

    Touches `Model._nodes_by_depth` (set by `keras.src.ops.function.Function`, the base
    of Functional; a Sequential model has none). No public API tells a functional model
    from a subclassed one."""
    return isinstance(model, keras.Model) and hasattr(model, "_nodes_by_depth")


def model_nodes(model: Any) -> list:
    """Every node (one call of one layer) of the functional `model`'s graph, depth by
    depth from the outputs.

    Touches `Model._nodes_by_depth` and, on each node (`keras.src.ops.node.Node`),
    `operation` (the layer called, None for an input), `is_input` and `input_tensors`,
    which the callers read. Keras has no public graph API: `model.layers` gives the
    layers, not who feeds whom, nor how often a shared layer is called."""
    return [node for nodes in model._nodes_by_depth.values() for node in nodes]


def inbound_nodes(layer: Any) -> list:
    """The nodes of `layer`: one per call of it in a functional graph (each with its
    `input_tensors`).

    Touches `Operation._inbound_nodes` (and the nodes' `input_tensors`). No public API
    lists a layer's calls; `layer.input` raises for a layer called more than once."""
    return layer._inbound_nodes


def keras_producer(tensor: Any) -> Any:
    """The layer (operation) whose call produced the symbolic `tensor`, or None for a
    tensor without Keras history.

    Touches `KerasTensor._keras_history` (a `KerasHistory(operation, node_index,
    tensor_index)` namedtuple) and its `operation`. No public API maps a symbolic
    tensor back to its layer."""
    history = getattr(tensor, "_keras_history", None)
    return history.operation if history else None


def tracked_sublayers(layer: Any) -> list:
    """The sublayers a custom (non-Model) layer tracks as attributes, in the order it
    set them; [] for a layer without any.

    Touches `Layer._layers` (the list Keras's attribute tracker fills, and what
    `Model.layers` returns for a model). A plain `keras.layers.Layer` has no public
    `layers` property; its `_flatten_layers` is private as well."""
    return list(getattr(layer, "_layers", []))


def build_from_batch(model: Any, batch: tuple) -> None:
    """Builds `model`'s compiled metrics and optimizer from `batch` (an (x, y) pair of
    tensors), once: `fit()` then skips its own build.

    Touches `Trainer._symbolic_build(data_batch=...)` and replaces
    `Trainer._maybe_symbolic_build` with a no-op. Under MultiWorkerMirroredStrategy,
    Keras 3.15's fit() builds from a batch reduced over the replicas, which fails
    (tensorflow/tensorflow#72388); Keras has no public way to build a compiled model's
    metrics and optimizer from a given batch (`model.build` builds the layers only)."""
    model._symbolic_build(data_batch=batch)
    model._maybe_symbolic_build = lambda *args, **kwargs: None


def scale_learning_rates(optimizer: Any, scale_of: Callable[[Any], float]) -> None:
    """Makes `optimizer` multiply the learning rate of each variable by
    `scale_of(variable)` (the Keras variable; a Python float, read when the step is
    traced): its updates and its decoupled weight decay (`lr x weight_decay`), as a
    PyTorch parameter group's learning rate does.

    Touches `Optimizer._get_variable_index`, `Optimizer._trainable_variables` and
    `Optimizer._apply_weight_decay`. Keras 3 optimizers have no parameter groups;
    every optimizer computes its updates in `update_step(gradient, variable,
    learning_rate)`, which gets the backend's variable: the first two (what Keras's
    own optimizers use to find a variable's slots) map it back to the Keras one. The
    decay is applied apart, by `_apply_weight_decay(variables)` at the optimizer's
    rate: it is called once per scale, with `weight_decay` scaled."""
    update_step = optimizer.update_step
    apply_weight_decay = optimizer._apply_weight_decay

    def scaled(gradient, variable, learning_rate):
        index = optimizer._get_variable_index(variable)
        scale = scale_of(optimizer._trainable_variables[index])
        return update_step(gradient, variable, learning_rate * scale)

    def scaled_weight_decay(variables):
        decay = optimizer.weight_decay
        if decay is None:
            return apply_weight_decay(variables)
        groups: dict[float, list] = {}
        for variable in variables:
            groups.setdefault(float(scale_of(variable)), []).append(variable)
        try:
            for scale, group in groups.items():
                optimizer.weight_decay = decay * scale
                apply_weight_decay(group)
        finally:
            optimizer.weight_decay = decay

    optimizer.update_step = scaled
    optimizer._apply_weight_decay = scaled_weight_decay


# ------------------------------------------------------------------------ TensorFlow

# Function attributes that keep a function call out of TensorFlow's inliner. Keras's
# TensorFlow backend runs grouped convolutions (and channels_first 3D convs) through
# `tf.function(jit_compile=True)`, which marks the call with both.
_NO_INLINE_ATTRS = ("_XlaMustCompile", "_noinline")


def make_inlinable(graph_def: Any) -> None:
    """Removes, in place, the attributes that keep the functions of `graph_def` (a
    `tf.compat.v1.GraphDef`) from being inlined: its nodes, its library's functions and
    their nodes.

    Touches the attribute names `_XlaMustCompile` and `_noinline`, which
    `tf.function(jit_compile=True)` puts on the call and its function (TensorFlow's
    private graph attributes). Without it, tf2onnx and Grappler leave those calls (e.g.
    Keras's grouped convolutions) as unconvertible XLA calls; TensorFlow has no public
    switch to inline a jit-compiled function."""
    for node in graph_def.node:
        for attr in _NO_INLINE_ATTRS:
            node.attr.pop(attr, None)
    for function in graph_def.library.function:
        for attr in _NO_INLINE_ATTRS:
            function.attr.pop(attr, None)
        for node in function.node_def:
            for attr in _NO_INLINE_ATTRS:
                node.attr.pop(attr, None)


def freeze_graph_def(concrete: Any) -> Any:
    """The GraphDef of the ConcreteFunction `concrete` with its variables and captured
    tensors as constants.

    Touches `tensorflow.python.framework.convert_to_constants` (an internal module):
    `_FunctionConverterDataInEager` and `_replace_variables_by_constants`, the first
    two steps of `convert_variables_to_constants_v2`, which also builds a
    ConcreteFunction from that GraphDef and costs several copies of the weights
    (ResNet50, 100 MB of weights, peaked 1 GB above its start instead of 220 MB).
    Should they change, the converter itself (from the same internal module; TensorFlow
    exports no freezing function for TF2 functions) gives the same GraphDef."""
    from tensorflow.python.framework import convert_to_constants

    try:
        data = convert_to_constants._FunctionConverterDataInEager(
            func=concrete, lower_control_flow=True, aggressive_inlining=False
        )
        return convert_to_constants._replace_variables_by_constants(data)[0]
    except (AttributeError, TypeError):  # they changed: the converter
        frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
        return frozen.graph.as_graph_def()


# --------------------------------------------------------------------------- tf2onnx


def tf2onnx_optimizers() -> dict | None:
    """tf2onnx's default graph optimizers, {name: optimizer class} in the order it runs
    them, or None when tf2onnx no longer has that list.

    Touches `tf2onnx.optimizer._get_optimizers()`. `optimize_graph(graph,
    optimizers=...)` is public, but the default set is not: bnkeras runs the defaults
    in place, one by one, so that a failing one can be left out (tf2onnx would copy the
    whole graph, weights included, before each optimizer to skip a failing one)."""
    from tf2onnx import optimizer

    if not hasattr(optimizer, "_get_optimizers"):
        return None
    return dict(optimizer._get_optimizers())


@contextlib.contextmanager
def tf2onnx_protos_written_once(graph: Any) -> Iterator[None]:
    """Within the block, the tf2onnx graph `graph` does not rewrite its nodes' protos
    (`graph.update_proto()` does nothing); `graph.make_graph()` writes them all when
    the model is made, as it always does.

    Touches `tf2onnx.graph.Graph.update_proto`, shadowed on the instance: tf2onnx's
    `GraphOptimizerBase.optimize` calls it after every optimizer, rewriting every
    node's attributes, weights included, into its NodeProto (a third of ResNet50's
    conversion), while the optimizers read and write the nodes' own attributes,
    never the protos. No option skips it. Should tf2onnx stop calling it, nothing
    changes; should `make_graph` stop calling it, tests/test_compat.py fails."""
    graph.update_proto = lambda *args, **kwargs: None
    try:
        yield
    finally:
        del graph.update_proto


def compact_tf2onnx_node(node: Any) -> None:
    """Gives the tf2onnx graph node `node` a fresh copy of its NodeProto, freeing the
    attribute values its rewrites replaced. Nothing happens when tf2onnx's node keeps
    its proto elsewhere.

    Touches `tf2onnx.graph.Node._op` (the NodeProto) and `Node._attr` (its attributes
    by name). tf2onnx rewrites every node's proto after each optimizer; with protobuf's
    upb backend the replaced attributes stay allocated until the whole proto is freed
    (2.3 GB for ResNet50). `Node.op` is read-only and tf2onnx has no setter."""
    import onnx

    if hasattr(node, "_op") and hasattr(node, "_attr"):
        proto = onnx.NodeProto()
        proto.CopyFrom(node.op)
        node._op, node._attr = proto, {a.name: a for a in proto.attribute}


# ---------------------------------------------------------------- TensorFlow Datasets


def tfds_progress_bar_shown() -> bool:
    """Whether TFDS shows its progress bars now (True when it cannot tell), so that a
    caller that turns them off can restore the setting.

    Touches `tensorflow_datasets.core.utils.tqdm_utils._active` (an internal module's
    global). TFDS has `tfds.disable_progress_bar()` and
    `tfds.display_progress_bar(enable)`, but no getter."""
    from tensorflow_datasets.core.utils import tqdm_utils

    return bool(getattr(tqdm_utils, "_active", True))


def tfds_data_dir_root(builder: Any) -> str:
    """The root data directory of the TFDS `builder` (`data_dir` is
    `<root>/<name>/<config>/<version>`), under which TFDS looks for manual downloads
    (`<root>/downloads/manual`).

    Touches `DatasetBuilder._data_dir_root` on TFDS releases without the public
    `data_dir_root` property (4.9.0 has none; 4.9.10 has it, and it is used there)."""
    if hasattr(type(builder), "data_dir_root"):
        return str(builder.data_dir_root)
    return str(builder._data_dir_root)


def quiet_download_banner(builder_class: type) -> type:
    """Class decorator: the TFDS builder `builder_class` prints neither TFDS's
    "Downloading and preparing dataset ..." banner nor its "... downloaded and
    prepared" line (for a dataset generated locally, they only confuse).

    Touches `DatasetBuilder._log_download_bytes` and `_log_download_done`, the methods
    `download_and_prepare` prints them from (with `termcolor.cprint`, to stdout); TFDS
    has no option to turn them off."""

    def silent(self):
        del self

    builder_class._log_download_bytes = silent
    builder_class._log_download_done = silent
    return builder_class
