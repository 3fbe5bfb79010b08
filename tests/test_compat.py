"""Each private name in `bnkeras._compat`: a test that fails clearly on an upgrade.

One test per function of bnkeras/_compat.py (the last test checks that). A failure
names the private attribute and the installed release: update that function in
bnkeras/_compat.py for the release (docs/development.md, "Private APIs and version
caps"), or keep the cap in setup.cfg.
"""

import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from bnkeras import _compat

ROOT = Path(__file__).resolve().parents[1]


def _changed(attribute, library, version, function):
    return (
        f"{attribute} changed or is gone in {library} {version}: update bnkeras/_compat.py "
        f"{function} for this release (or keep the version cap in setup.cfg)"
    )


def _keras(attribute, function):
    return _changed(attribute, "Keras", keras.__version__, function)


def _functional_with_shared_dense():
    """inputs -> dense -> relu -> dense (the same layer again): (model, dense, relu)."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(3, name="shared")
    relu = keras.layers.ReLU(name="relu")
    outputs = dense(relu(dense(inputs)))
    return keras.Model(inputs, outputs), dense, relu


# ----------------------------------------------------------------------------- Keras


def test_is_graph_model_tells_functional_and_sequential_from_subclassed():
    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert _compat.is_graph_model(functional), _keras(
        "keras.src.models.functional.Functional", "is_graph_model"
    )
    assert _compat.is_graph_model(sequential)
    assert not _compat.is_graph_model(Subclassed())
    assert not _compat.is_graph_model(keras.layers.Dense(1))


def test_is_functional_is_true_for_functional_models_only():
    model, _, _ = _functional_with_shared_dense()
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert _compat.is_functional(model), _keras("Model._nodes_by_depth", "is_functional")
    assert not _compat.is_functional(sequential), _keras(
        "Model._nodes_by_depth (now on Sequential models too)", "is_functional"
    )
    assert not _compat.is_functional(Subclassed())
    assert not _compat.is_functional(keras.layers.Dense(1))


def test_model_nodes_gives_each_call_with_its_layer_and_inputs():
    model, dense, relu = _functional_with_shared_dense()
    nodes = _compat.model_nodes(model)
    message = _keras(
        "Model._nodes_by_depth / Node.operation, is_input, input_tensors", "model_nodes"
    )
    calls = [n for n in nodes if not n.is_input]
    assert [n.operation for n in calls].count(dense) == 2, message
    assert [n.operation for n in calls].count(relu) == 1, message
    assert sum(n.is_input for n in nodes) == 1, message
    (relu_call,) = [n for n in calls if n.operation is relu]
    dense_inputs = [n.input_tensors[0] for n in calls if n.operation is dense]
    assert any(t is model.inputs[0] for t in dense_inputs), message
    assert any(t is relu_call.output_tensors[0] for t in dense_inputs), message


def test_inbound_nodes_lists_each_call_of_a_layer():
    model, dense, relu = _functional_with_shared_dense()
    message = _keras("Operation._inbound_nodes / Node.input_tensors", "inbound_nodes")
    nodes = _compat.inbound_nodes(dense)
    assert len(nodes) == 2, message
    assert any(t is model.inputs[0] for n in nodes for t in n.input_tensors), message
    assert len(_compat.inbound_nodes(relu)) == 1, message
    assert _compat.inbound_nodes(keras.layers.Dense(1)) == [], message


def test_keras_producer_maps_a_symbolic_tensor_to_its_layer():
    model, dense, _ = _functional_with_shared_dense()
    message = _keras("KerasTensor._keras_history.operation", "keras_producer")
    assert _compat.keras_producer(model.outputs[0]) is dense, message
    assert isinstance(_compat.keras_producer(model.inputs[0]), keras.layers.InputLayer), message
    assert _compat.keras_producer(np.zeros(2)) is None


def test_tracked_sublayers_lists_a_custom_layers_sublayers_in_order():
    class Block(keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.norm = keras.layers.BatchNormalization()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(self.norm(x))

    block = Block()
    assert _compat.tracked_sublayers(block) == [block.norm, block.dense], _keras(
        "Layer._layers", "tracked_sublayers"
    )
    assert _compat.tracked_sublayers(keras.layers.Dense(2)) == []


def test_build_from_batch_builds_optimizer_and_metrics_and_fit_skips_its_build():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = np.zeros((4, 3), "float32"), np.zeros((4,), "int32")
    assert not model.optimizer.built
    _compat.build_from_batch(model, (x, y))
    assert model.optimizer.built, _keras(
        "Trainer._symbolic_build(data_batch=...)", "build_from_batch"
    )
    assert all(getattr(m, "built", True) for m in model.metrics), _keras(
        "Trainer._symbolic_build (compiled metrics)", "build_from_batch"
    )
    # fit() must call the hook build_from_batch replaced, or it would build again.
    calls = []
    skipped = model._maybe_symbolic_build
    model._maybe_symbolic_build = lambda *a, **k: calls.append(1) or skipped(*a, **k)
    model.fit(x, y, epochs=1, verbose=0)
    assert calls, _keras(
        "Trainer._maybe_symbolic_build (no longer called by fit)", "build_from_batch"
    )


def test_scale_learning_rates_reaches_every_optimizer_variable():
    """`_get_variable_index` and `_trainable_variables` map the backend's variable of an
    update back to the Keras variable: one SGD step moves a variable scaled by 0 not at all."""
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(dense.trainable_variables)
    frozen = dense.kernel
    _compat.scale_learning_rates(optimizer, lambda v: 0.0 if v is frozen else 1.0)
    before = [np.array(v) for v in dense.trainable_variables]
    optimizer.apply([np.ones(v.shape, "float32") for v in dense.trainable_variables])
    after = [np.array(v) for v in dense.trainable_variables]
    assert np.array_equal(before[0], after[0]), _keras(
        "Optimizer._get_variable_index / _trainable_variables", "scale_learning_rates"
    )
    assert np.allclose(after[1], before[1] - 1.0)


def test_scale_learning_rates_scales_the_decoupled_weight_decay():
    """`_apply_weight_decay` decays at the optimizer's rate: scaled per variable, a zero
    gradient step shrinks a variable scaled by s by lr x s x weight_decay (and one
    scaled by 0 not at all)."""
    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    dense.bias.assign(np.ones(2, "float32"))
    optimizer = keras.optimizers.SGD(1.0, weight_decay=0.5)
    optimizer.build(dense.trainable_variables)
    scales = {id(dense.kernel): 0.5, id(dense.bias): 0.0}
    _compat.scale_learning_rates(optimizer, lambda v: scales[id(v)])
    before = [np.array(v) for v in dense.trainable_variables]
    optimizer.apply([np.zeros(v.shape, "float32") for v in dense.trainable_variables])
    kernel, bias = (np.array(v) for v in dense.trainable_variables)
    message = _keras("Optimizer._apply_weight_decay", "scale_learning_rates")
    np.testing.assert_allclose(kernel, before[0] * (1 - 0.5 * 0.5), rtol=1e-6, err_msg=message)
    np.testing.assert_array_equal(bias, before[1], err_msg=message)
    assert optimizer.weight_decay == 0.5  # as it was


# ------------------------------------------------------------------------ TensorFlow


def _tf():
    pytest.importorskip("tensorflow", reason="the TensorFlow uses need TensorFlow")
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        pytest.skip("needs KERAS_BACKEND=tensorflow")
    return tf


_KEEP = []  # the variables of the traced functions (a concrete function holds weak references)


def _jit_concrete(tf):
    """A function that calls a `tf.function(jit_compile=True)` (as Keras's grouped
    convolutions do) and reads a variable."""
    weight = tf.Variable([[2.0, 3.0]])
    _KEEP.append(weight)

    @tf.function(jit_compile=True)
    def inner(x):
        return x * weight

    @tf.function
    def outer(x):
        return inner(x) + 1.0

    return outer.get_concrete_function(tf.TensorSpec((None, 2), tf.float32))


def _attrs(graph_def):
    names = [set(n.attr) for n in graph_def.node]
    for function in graph_def.library.function:
        names.append(set(function.attr))
        names.extend(set(n.attr) for n in function.node_def)
    return set().union(*names)


def test_make_inlinable_removes_tensorflows_no_inline_attributes():
    tf = _tf()
    graph_def = _compat.freeze_graph_def(_jit_concrete(tf))
    marks = set(_compat._NO_INLINE_ATTRS)
    assert marks <= _attrs(graph_def), _changed(
        "the function attributes _XlaMustCompile / _noinline of tf.function(jit_compile=True)",
        "TensorFlow",
        tf.__version__,
        "make_inlinable",
    )
    _compat.make_inlinable(graph_def)
    assert not marks & _attrs(graph_def)


def test_freeze_graph_def_turns_variables_into_constants_through_the_private_steps():
    tf = _tf()
    from tensorflow.python.framework import convert_to_constants

    for name in ("_FunctionConverterDataInEager", "_replace_variables_by_constants"):
        assert hasattr(convert_to_constants, name), _changed(
            f"tensorflow.python.framework.convert_to_constants.{name}",
            "TensorFlow",
            tf.__version__,
            "freeze_graph_def",
        )
    graph_def = _compat.freeze_graph_def(_jit_concrete(tf))
    ops = {n.op for n in graph_def.node} | {
        n.op for f in graph_def.library.function for n in f.node_def
    }
    assert not ops & {"VarHandleOp", "ReadVariableOp", "ResourceGather"}, ops
    with tf.Graph().as_default():
        tf.import_graph_def(graph_def, name="")
        with tf.compat.v1.Session() as session:
            out = session.run("Identity:0", {"x:0": np.ones((1, 2), "float32")})
    np.testing.assert_allclose(out, [[3.0, 4.0]])


# --------------------------------------------------------------------------- tf2onnx


def test_tf2onnx_optimizers_are_tf2onnxs_default_list():
    pytest.importorskip("tf2onnx")
    import tf2onnx
    from tf2onnx import optimizer

    optimizers = _compat.tf2onnx_optimizers()
    assert optimizers, _changed(
        "tf2onnx.optimizer._get_optimizers", "tf2onnx", tf2onnx.__version__, "tf2onnx_optimizers"
    )
    assert "optimize_transpose" in optimizers
    for factory in optimizers.values():
        assert inspect.isclass(factory) and hasattr(factory, "optimize")
    # optimize_graph's own default is that list.
    source = inspect.getsource(optimizer.optimize_graph)
    assert "_get_optimizers()" in source, _changed(
        "tf2onnx.optimizer.optimize_graph's default optimizers",
        "tf2onnx",
        tf2onnx.__version__,
        "tf2onnx_optimizers",
    )


def test_compact_tf2onnx_node_gives_the_node_a_fresh_proto():
    pytest.importorskip("tf2onnx")
    import tf2onnx
    from tf2onnx.graph import Graph

    graph = Graph([], opset=13)
    const = graph.make_const("w", np.arange(6, dtype="float32").reshape(2, 3))
    node = graph.make_node("Relu", [const.output[0]], attr={"alpha": 0.5}, name="relu")
    old = node.op
    _compat.compact_tf2onnx_node(node)
    message = _changed(
        "tf2onnx.graph.Node._op / _attr", "tf2onnx", tf2onnx.__version__, "compact_tf2onnx_node"
    )
    assert node.op is not old, message
    assert node.op == old, message
    assert node.get_attr_value("alpha") == 0.5, message
    assert node.get_attr("alpha") is next(a for a in node.op.attribute if a.name == "alpha"), (
        message
    )


def test_tf2onnx_protos_written_once_skips_the_optimizers_rewrites_not_make_graphs():
    pytest.importorskip("tf2onnx")
    import tf2onnx
    from tf2onnx.graph import Graph
    from tf2onnx.optimizer.identity_optimizer import IdentityOptimizer

    def relu_graph():
        graph = Graph([], opset=13)
        graph.add_graph_input("x", 1, [2])  # float
        node = graph.make_node("LeakyRelu", ["x"], attr={"alpha": 0.5}, name="relu")
        graph.add_graph_output(node.output[0])
        return graph, node

    def proto_alpha(proto):
        return next(a.f for a in proto.attribute if a.name == "alpha")

    message = _changed(
        "tf2onnx.graph.Graph.update_proto",
        "tf2onnx",
        tf2onnx.__version__,
        "tf2onnx_protos_written_once",
    )
    # tf2onnx's way: every optimizer rewrites the protos (what the block skips).
    graph, node = relu_graph()
    node.set_attr("alpha", 0.25)
    IdentityOptimizer().optimize(graph, 0)
    assert proto_alpha(node.op) == 0.25, message
    # In the block: the proto is left as it was, and the node's attribute is current.
    graph, node = relu_graph()
    with _compat.tf2onnx_protos_written_once(graph):
        node.set_attr("alpha", 0.25)
        IdentityOptimizer().optimize(graph, 0)
        assert proto_alpha(node.op) == 0.5, message
    assert node.get_attr_value("alpha") == 0.25
    assert "update_proto" not in vars(graph)  # the instance is as it was
    # make_graph writes them: the model has the optimized attribute.
    (made,) = graph.make_graph("doc").node
    assert proto_alpha(made) == 0.25, message


# ---------------------------------------------------------------- TensorFlow Datasets


def _tfds():
    pytest.importorskip("tensorflow_datasets")
    import tensorflow_datasets as tfds

    return tfds


def test_tfds_progress_bar_shown_follows_tfds_switch():
    tfds = _tfds()
    from tensorflow_datasets.core.utils import tqdm_utils

    assert hasattr(tqdm_utils, "_active"), _changed(
        "tensorflow_datasets.core.utils.tqdm_utils._active",
        "tensorflow-datasets",
        tfds.__version__,
        "tfds_progress_bar_shown",
    )
    before = _compat.tfds_progress_bar_shown()
    try:
        tfds.disable_progress_bar()
        assert _compat.tfds_progress_bar_shown() is False
        tfds.display_progress_bar(True)
        assert _compat.tfds_progress_bar_shown() is True
    finally:
        tfds.display_progress_bar(before)


def test_tfds_data_dir_root_is_the_root_the_builder_was_given(tmp_path):
    tfds = _tfds()
    from bnkeras.training.shapes_dataset import BnkerasShapes

    builder = BnkerasShapes(data_dir=str(tmp_path))
    assert Path(_compat.tfds_data_dir_root(builder)) == tmp_path, _changed(
        "DatasetBuilder.data_dir_root / _data_dir_root",
        "tensorflow-datasets",
        tfds.__version__,
        "tfds_data_dir_root",
    )
    assert Path(builder.data_dir).is_relative_to(tmp_path)


def _tiny_builder(tfds, quiet):
    class TinyForCompatTest(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict({"x": np.int64})
            )

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            yield from ((i, {"x": i}) for i in range(2))

    return _compat.quiet_download_banner(TinyForCompatTest) if quiet else TinyForCompatTest


@pytest.mark.parametrize("quiet", [False, True], ids=["tfds-prints", "quiet"])
def test_quiet_download_banner_silences_tfds_download_lines(tmp_path, capfd, quiet):
    """Without the decorator TFDS prints its two lines (the broken case: the check can
    fail); with it, neither."""
    tfds = _tfds()
    bars = _compat.tfds_progress_bar_shown()
    tfds.disable_progress_bar()
    try:
        _tiny_builder(tfds, quiet)(data_dir=str(tmp_path)).download_and_prepare()
    finally:
        tfds.display_progress_bar(bars)
    out = capfd.readouterr().out
    pattern = re.compile("Downloading and preparing|downloaded and prepared")
    lines = [line for line in out.splitlines() if pattern.search(line)]
    if quiet:
        assert not lines, (
            _changed(
                "DatasetBuilder._log_download_bytes / _log_download_done",
                "tensorflow-datasets",
                tfds.__version__,
                "quiet_download_banner",
            )
            + f": printed {lines}"
        )
    else:
        assert len(lines) == 2, out


# ------------------------------------------------------------------------- the list


def test_each_compat_function_has_a_test_here_and_a_line_in_the_docs():
    functions = sorted(
        name
        for name, value in vars(_compat).items()
        if inspect.isfunction(value)
        and value.__module__ == _compat.__name__
        and not name.startswith("_")
    )
    source = Path(__file__).read_text()
    untested = [f for f in functions if f"_compat.{f}(" not in source]
    assert not untested, f"bnkeras/_compat.py functions without a test here: {untested}"
    docs = (ROOT / "docs" / "development.md").read_text()
    section = docs.split("## Private APIs and version caps", 1)
    assert len(section) == 2, (
        "docs/development.md lacks its 'Private APIs and version caps' section"
    )
    missing = [f for f in functions if f"`{f}`" not in section[1]]
    assert not missing, (
        f"docs/development.md 'Private APIs and version caps' does not list {missing}"
    )
