"""Fold batch normalization into the neighbouring conv/dense weights of a Keras model.

In inference a BN layer is a per-channel affine map `z -> s * z + t` with
`s = gamma / sqrt(moving_variance + epsilon)` and `t = beta - moving_mean * s`.
When the BN reads the output of a linear layer `z = W x + b` (conv, depthwise,
separable, transposed conv or dense with a linear activation) that nothing else
reads, the pair is the linear layer `(s W) x + (s b + t)`: the BN is removed and
its map folded **backward** into the kernel and bias (a bias is created where
there was none). When it cannot be, but the BN's output feeds exactly one conv
with `valid` padding or a 1x1 kernel, or one dense layer, the map is folded
**forward** into that layer's input side, which is exact there. Every other BN
becomes one `bnkeras.ChannelAffine` layer. The arithmetic is float64, cast to
each layer's variable dtype. The input model is never modified.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import warnings
from typing import Any

import keras
import numpy as np

import bnkeras
from bnkeras import _compat
from bnkeras.errors import Error
from bnkeras.model_layers import BN_TYPES, bn_layers, iter_layers

_CONV = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
_SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
_TRANSPOSE = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_FLOAT16_MAX = float(np.finfo(np.float16).max)


class FoldError(Error, ValueError):
    """The model cannot be folded at all (e.g. a subclassed model)."""


class FoldAction(enum.StrEnum):
    """What became of one BN layer."""

    FOLDED = "folded"  # into the conv/dense layer producing its input
    FOLDED_FORWARD = "folded_forward"  # into the single conv/dense layer reading its output
    AFFINE = "affine"  # replaced by a bnkeras.ChannelAffine
    KEPT = "kept"  # left as it is: inside a graph that cannot be inspected


@dataclasses.dataclass
class FoldEntry:
    """What happened to one BN layer."""

    bn: str
    action: FoldAction
    into: str | None = None
    reason: str | None = None

    def describe(self):
        if self.action == FoldAction.FOLDED:
            return f"{self.bn} -> folded into {self.into}"
        if self.action == FoldAction.FOLDED_FORWARD:
            return f"{self.bn} -> folded forward into {self.into} ({self.reason})"
        if self.action == FoldAction.KEPT:
            return f"{self.bn} -> left as it is: {self.reason}"
        return f"{self.bn} -> kept as ChannelAffine: {self.reason}"


@dataclasses.dataclass
class FoldReport:
    """What `fold_batchnorm` did to each BN layer, and the counts before and after.

    `entries` holds one `FoldEntry` per BN layer (its name, its `FoldAction`: folded,
    folded forward, kept as `ChannelAffine` or left as it is, what it went into and why);
    `.folded` and `.refused` select them. `str(report)` is the summary `bnkeras export`
    prints, `to_dict()` what it writes into `report.json`.
    """

    entries: list
    bn_before: int
    bn_after: int
    params_before: int
    params_after: int
    warnings: list = dataclasses.field(default_factory=list)

    def _with(self, *actions):
        return [e for e in self.entries if e.action in actions]

    @property
    def folded(self) -> list[FoldEntry]:
        return self._with(FoldAction.FOLDED, FoldAction.FOLDED_FORWARD)

    @property
    def refused(self) -> list[FoldEntry]:
        return self._with(FoldAction.AFFINE, FoldAction.KEPT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "bn_before": self.bn_before,
            "bn_after": self.bn_after,
            "folded": len(self.folded),
            "refused": len(self.refused),
            "params_before": self.params_before,
            "params_after": self.params_after,
            "entries": [dataclasses.asdict(e) for e in self.entries],
            "warnings": list(self.warnings),
        }

    def __str__(self):
        counts = [f"{len(self.folded)} folded"]
        counts.append(f"{len(self._with(FoldAction.AFFINE))} kept as affine")
        kept = self._with(FoldAction.KEPT)
        if kept:
            counts.append(f"{len(kept)} left as BN")
        lines = [
            f"BN layers: {self.bn_before} before, {self.bn_after} after ({', '.join(counts)})",
            f"parameters: {self.params_before:,} before, {self.params_after:,} after",
        ]
        lines += [f"  {e.describe()}" for e in self.entries]
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)


@dataclasses.dataclass
class FoldResult:
    """The result of `fold_batchnorm`: `.model`, a new model without the folded BN layers
    (the input model is left untouched), and `.report`, a `FoldReport`."""

    model: keras.Model
    report: FoldReport


def count_bn(model: keras.Model) -> int:
    """The number of BN-family layers (Keras's and bnkeras's) in `model`, those inside
    nested models and custom layers included."""
    return len(bn_layers(model))


def bn_affine(bn):
    """The float64 per-channel (scale, shift) of `bn` in inference."""
    mean = np.asarray(bn.moving_mean, np.float64)
    variance = np.asarray(bn.moving_variance, np.float64)
    gamma = np.asarray(bn.gamma, np.float64) if bn.scale else np.ones_like(mean)
    beta = np.asarray(bn.beta, np.float64) if bn.center else np.zeros_like(mean)
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return scale, beta - mean * scale


# ----------------------------------------------------------------------- weights


def _kind(layer):
    for kind, types in (
        ("transpose", _TRANSPOSE),
        ("separable", _SEPARABLE),
        ("depthwise", _DEPTHWISE),
        ("conv", _CONV),
        ("dense", (keras.layers.Dense,)),
    ):
        if isinstance(layer, types):
            return kind
    return None


def _named_weights(layer):
    """The layer's weights as a float64 dict (a zero bias where there is none)."""
    kind = _kind(layer)
    values = {}
    if kind == "separable":
        values["depthwise"] = np.asarray(layer.depthwise_kernel, np.float64)
        values["kernel"] = np.asarray(layer.pointwise_kernel, np.float64)
    elif kind == "depthwise":
        values["kernel"] = np.asarray(layer.kernel, np.float64)
    else:
        values["kernel"] = np.asarray(layer.kernel, np.float64)
    outputs = _output_channels(layer, values)
    values["bias"] = (
        np.asarray(layer.bias, np.float64) if layer.use_bias else np.zeros(outputs, np.float64)
    )
    return values


def _output_channels(layer, values):
    kind = _kind(layer)
    kernel = values["kernel"]
    if kind == "transpose":
        return kernel.shape[-2]
    if kind == "depthwise":
        return kernel.shape[-2] * kernel.shape[-1]
    return kernel.shape[-1]


def _fold_output(layer, values, scale, shift):
    """BN after `layer`: scale/shift the output channels."""
    kind = _kind(layer)
    kernel = values["kernel"]
    if kind == "transpose":  # kernel (*k, out, in)
        values["kernel"] = kernel * scale[:, None]
    elif kind == "depthwise":  # kernel (*k, in, multiplier); output i * m + j
        values["kernel"] = kernel * scale.reshape(kernel.shape[-2:])
    else:  # conv, separable (pointwise), dense: output channels last
        values["kernel"] = kernel * scale
    values["bias"] = values["bias"] * scale + shift


def _fold_input(layer, values, scale, shift):
    """BN before `layer` (exact only where the caller checked it): scale/shift the inputs."""
    kind = _kind(layer)
    kernel = values["kernel"]
    kernel_axes = tuple(range(kernel.ndim - 2))
    if kind in ("conv", "dense"):  # kernel (*k, in, out)
        flat = kernel.reshape(-1, *kernel.shape[-2:])  # (taps, in, out)
        values["bias"] = values["bias"] + np.einsum("kio,i->o", flat, shift)
        values["kernel"] = kernel * scale[:, None]
    elif kind == "depthwise":  # kernel (*k, in, multiplier)
        values["bias"] = values["bias"] + (kernel.sum(kernel_axes) * shift[:, None]).reshape(-1)
        values["kernel"] = kernel * scale[:, None]
    else:
        raise AssertionError(kind)  # _forward_target never picks other kinds


def _check_float16(layer, values, notes):
    if keras.mixed_precision.Policy(layer.dtype_policy.name).compute_dtype != "float16":
        return
    largest = max(float(np.abs(v).max(initial=0.0)) for v in values.values())
    if largest > _FLOAT16_MAX:
        message = (
            f"{layer.name}: a folded weight reaches {largest:.3g}, beyond the float16 range "
            f"({_FLOAT16_MAX}); the layer computes in float16 and will overflow"
        )
        warnings.warn(message, UserWarning, stacklevel=3)
        notes.append(message)


def _rebuilt(layer, values, input_shape):
    """A copy of `layer` with a bias and the folded float64 `values`."""
    config = {**layer.get_config(), "use_bias": True}
    new = layer.__class__.from_config(config)
    new.build(input_shape)
    ordered = [values["kernel"], values["bias"]]
    if _kind(layer) == "separable":
        ordered = [values["depthwise"], *ordered]
    new.set_weights([w.astype(v.dtype) for w, v in zip(ordered, new.weights, strict=True)])
    return new


# ---------------------------------------------------------------------- analysis


def _describe(layer):
    name = type(layer).__name__
    if isinstance(layer, keras.layers.InputLayer):
        return "the model input"
    if isinstance(layer, keras.Model):
        return f"nested model {layer.name} (its output is not a single conv/dense output)"
    groups = (
        (
            "an activation",
            (
                keras.layers.ReLU,
                keras.layers.Activation,
                keras.layers.LeakyReLU,
                keras.layers.ELU,
                keras.layers.PReLU,
                keras.layers.Softmax,
            ),
        ),
        (
            "a merge layer",
            (
                keras.layers.Add,
                keras.layers.Concatenate,
                keras.layers.Multiply,
                keras.layers.Average,
                keras.layers.Subtract,
                keras.layers.Maximum,
                keras.layers.Minimum,
            ),
        ),
        (
            "pooling",
            (
                keras.layers.MaxPooling1D,
                keras.layers.MaxPooling2D,
                keras.layers.MaxPooling3D,
                keras.layers.AveragePooling1D,
                keras.layers.AveragePooling2D,
                keras.layers.AveragePooling3D,
                keras.layers.GlobalAveragePooling1D,
                keras.layers.GlobalAveragePooling2D,
                keras.layers.GlobalMaxPooling2D,
            ),
        ),
        ("another normalization", BN_TYPES),
    )
    for words, types in groups:
        if isinstance(layer, types):
            return f"{layer.name} ({name}, {words})"
    return f"{layer.name} ({name})"


class _Graph:
    """Who produces and who consumes each tensor in one functional model."""

    def __init__(self, model):
        self.model = model
        self.nodes = _compat.model_nodes(model)
        self.consumers = {}
        self.calls = {}
        for node in self.nodes:
            if node.operation is None or node.is_input:
                continue
            self.calls.setdefault(id(node.operation), []).append(node)
            for tensor in node.input_tensors:
                self.consumers.setdefault(id(tensor), []).append(node.operation)
        for tensor in model.outputs:
            self.consumers.setdefault(id(tensor), []).append("the model output")

    def producer(self, tensor):
        return _compat.keras_producer(tensor)

    def calls_of(self, layer):
        return self.calls.get(id(layer), [])


@functools.cache
def keras_misplaces_channels_first_bias():
    """True when `keras.ops.add` puts a (1, C, 1) bias on the LAST axis of an input
    whose last dimension is also C (Keras 3.15's TensorFlow backend turns such an add
    into `tf.nn.bias_add` with NHWC). Convs with data_format="channels_first" add
    their bias that way, so a folded bias would land on the wrong axis."""
    out = keras.ops.add(
        keras.ops.zeros((1, 2, 2)), keras.ops.reshape(keras.ops.arange(2.0), (1, 2, 1))
    )
    return bool(np.asarray(out)[0, 0, 1] != 0.0)


def _misplaced_bias(layer, output_shape):
    """Why a bias folded into `layer` could land on the wrong axis, or None.

    A channels_first conv whose output's last axis has (or may have, when it is
    only known at run time) as many entries as there are channels hits the bias
    quirk of `keras_misplaces_channels_first_bias` for some inputs."""
    rank = len(output_shape)
    if getattr(layer, "data_format", None) != "channels_first" or rank <= 2:
        return None
    channels, last = output_shape[1], output_shape[-1]
    if last is not None and last != channels:
        return None
    if not keras_misplaces_channels_first_bias():
        return None
    size = "a run-time size" if last is None else "the same size"
    return (
        f"{layer.name} is channels_first with {channels} channels and a last axis of {size}, "
        "where this Keras adds a conv bias along the last axis when the sizes match "
        "(keras.ops.add -> tf.nn.bias_add NHWC): a folded bias would be misplaced"
    )


def _channel_axis(layer, rank):
    if _kind(layer) == "dense":
        return rank - 1
    return 1 if getattr(layer, "data_format", "channels_last") == "channels_first" else rank - 1


def _backward_target(graph, bn, tensor):
    """(layer, None) when `bn` can fold into the producer of `tensor`, else (None, reason)."""
    producer = graph.producer(tensor)
    if _kind(producer) is None:
        return None, f"follows {_describe(producer)}"
    calls = graph.calls_of(producer)
    if len(calls) != 1:
        return None, f"{producer.name} is shared (called {len(calls)} times)"
    activation = getattr(producer, "activation", None)
    if activation not in (None, keras.activations.linear):
        name = getattr(activation, "__name__", str(activation))
        return None, f"{producer.name} applies activation {name!r} before the BN"
    others = [c for c in graph.consumers.get(id(tensor), []) if c is not bn]
    if others:
        names = ", ".join(c if isinstance(c, str) else c.name for c in others)
        return None, f"the output of {producer.name} is also used by {names}"
    rank = len(tensor.shape)
    if bn.axis % rank != _channel_axis(producer, rank):
        return None, f"it normalizes axis {bn.axis}, not the channel axis of {producer.name}"
    collision = _misplaced_bias(producer, tensor.shape)
    if collision:
        return None, collision
    return producer, None


def _forward_target(graph, bn, out_tensor):
    """(layer, how) for the single conv/dense reading `bn`'s output where folding forward
    is exact, else (None, why not or None)."""
    consumers = graph.consumers.get(id(out_tensor), [])
    if len(consumers) != 1 or isinstance(consumers[0], str):
        return None, None
    layer = consumers[0]
    kind = _kind(layer)
    if kind not in ("conv", "dense", "depthwise") or len(graph.calls_of(layer)) != 1:
        return None, None
    rank = len(out_tensor.shape)
    if bn.axis % rank != _channel_axis(layer, rank):
        return None, None
    if kind == "dense":
        return layer, "dense layer"
    if getattr(layer, "groups", 1) != 1:
        return None, None
    collision = _misplaced_bias(layer, graph.calls_of(layer)[0].outputs[0].shape)
    if collision:
        return None, f"not folded forward: {collision}"
    one_by_one = all(k == 1 for k in layer.kernel_size)
    if layer.padding == "valid" or (one_by_one and layer.padding == "same"):
        return layer, "1x1 kernel" if one_by_one else "valid padding"
    return None, None


def _is_functional(model):
    return _compat.is_functional(model)


def _functional_models(model):
    """`model` and the functional models nested in it through functional graphs
    only (one inside a subclassed model or custom layer is not rebuilt)."""
    stack = [model]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed([layer for layer in current.layers if _is_functional(layer)]))


def _as_functional(model):
    """The same layers as a functional model (Sequential -> functional, recursively;
    nested subclassed models stay as they are)."""
    if isinstance(model, keras.Sequential):
        if not model.inputs:
            raise FoldError(
                f"Sequential model {model.name!r} has no defined input: build it with a "
                "keras.Input first."
            )
        inputs = keras.Input(batch_shape=model.inputs[0].shape, dtype=model.inputs[0].dtype)
        x = inputs
        for layer in model.layers:
            x = _as_functional(layer)(x) if isinstance(layer, keras.Model) else layer(x)
        return keras.Model(inputs, x, name=model.name)
    if not _is_functional(model):
        return model
    if not _has_sequential(model):
        return model
    return keras.models.clone_model(
        model,
        clone_function=lambda layer: (
            _as_functional(layer) if isinstance(layer, keras.Model) else layer
        ),
    )


def _has_sequential(model):
    """Whether `model` is or contains a Sequential model (which `_as_functional` rebuilds
    by calling its layers on new inputs)."""
    return any(isinstance(layer, keras.Sequential) for layer in [model, *iter_layers(model)])


def _private_copy(model):
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


# ------------------------------------------------------------------ planning


@dataclasses.dataclass
class _TargetFold:
    """The BN maps folding into one conv/dense layer."""

    layer: keras.layers.Layer
    input_shape: tuple
    forward: list = dataclasses.field(default_factory=list)  # (scale, shift) on its input
    backward: list = dataclasses.field(default_factory=list)  # (scale, shift) on its output


@dataclasses.dataclass
class _Plan:
    entries: list = dataclasses.field(default_factory=list)
    dropped: set = dataclasses.field(default_factory=set)  # id of BNs removed from the graph
    affine: dict = dataclasses.field(default_factory=dict)  # id(bn) -> ChannelAffine
    kept: set = dataclasses.field(default_factory=set)  # id of BNs left as they are
    targets: dict = dataclasses.field(default_factory=dict)  # id(layer) -> _TargetFold

    def fold(self, bn, target, node, action, reason=None):
        fold = self.targets.setdefault(id(target), _TargetFold(target, node.input_tensors[0].shape))
        maps = fold.forward if action == FoldAction.FOLDED_FORWARD else fold.backward
        maps.append(bn_affine(bn))
        self.dropped.add(id(bn))
        self.entries.append(FoldEntry(bn.name, action, into=target.name, reason=reason))

    def handled(self, layer):
        return any(id(layer) in ids for ids in (self.dropped, self.affine, self.kept))


def _channel_affine(bn, input_rank):
    """A ChannelAffine holding `bn`'s inference map in its variables' dtype."""
    affine = bnkeras.ChannelAffine(axis=bn.axis, name=bn.name, dtype=bn.dtype_policy)
    scale, shift = bn_affine(bn)
    shape = [None] * input_rank
    shape[bn.axis] = scale.shape[0]
    affine.build(tuple(shape))
    affine.set_weights(
        [w.astype(v.dtype) for w, v in zip((scale, shift), affine.weights, strict=True)]
    )
    return affine


def _plan_bn(graph, bn, plan):
    """Decides what becomes of one BN of `graph` and records it in `plan`."""
    calls = graph.calls_of(bn)
    if len(calls) != 1:
        reason = f"it is shared (called {len(calls)} times)"
    else:
        target, reason = _backward_target(graph, bn, calls[0].input_tensors[0])
        if target is not None:
            plan.fold(bn, target, graph.calls_of(target)[0], FoldAction.FOLDED)
            return
        forward, how = _forward_target(graph, bn, calls[0].outputs[0])
        if forward is not None:
            plan.fold(
                bn,
                forward,
                graph.calls_of(forward)[0],
                FoldAction.FOLDED_FORWARD,
                reason=f"{reason}; exact into a {how}",
            )
            return
        if how is not None:
            reason = f"{reason}; {how}"
    rank = len(calls[0].input_tensors[0].shape) if calls else 2
    plan.affine[id(bn)] = _channel_affine(bn, rank)
    plan.entries.append(FoldEntry(bn.name, FoldAction.AFFINE, reason=reason))


def _plan_hidden_bns(work, plan):
    """BNs outside every functional graph (inside a subclassed model or a custom
    layer) stay as they are; the report names their outermost container."""
    for container in iter_layers(work):
        if _is_functional(container) or isinstance(container, BN_TYPES):
            continue
        for inner in bn_layers(container):
            if not plan.handled(inner):
                plan.kept.add(id(inner))
                reason = (
                    f"inside {container.name}, a subclassed model or custom layer whose "
                    "graph cannot be inspected"
                )
                plan.entries.append(FoldEntry(inner.name, FoldAction.KEPT, reason=reason))


def _plan(work):
    plan = _Plan()
    for graph in (_Graph(m) for m in _functional_models(work)):
        for layer in graph.model.layers:
            if isinstance(layer, BN_TYPES) and not plan.handled(layer):
                _plan_bn(graph, layer, plan)
    _plan_hidden_bns(work, plan)
    return plan


# ---------------------------------------------------------------- rebuilding


def _rebuild(work, plan, notes):
    """A clone of `work` with the planned folds and ChannelAffine layers."""
    replaced = dict(plan.affine)
    for key, fold in plan.targets.items():
        values = _named_weights(fold.layer)
        for scale, shift in fold.forward:  # input side first: BN2(L(BN1(x)))
            _fold_input(fold.layer, values, scale, shift)
        for scale, shift in fold.backward:
            _fold_output(fold.layer, values, scale, shift)
        _check_float16(fold.layer, values, notes)
        replaced[key] = _rebuilt(fold.layer, values, fold.input_shape)

    copies = []  # (layer of `work`, its copy): weights copied once the copies are built

    def clone_function(layer):
        if id(layer) in replaced:
            return replaced[id(layer)]
        if id(layer) in plan.dropped:
            return layer  # never called: `call_function` passes its input on
        copy = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, keras.layers.Layer):  # not a bare keras.ops operation
            copies.append((layer, copy))
        return copy

    def call_function(layer, *args, **kwargs):
        if id(layer) in plan.dropped:
            return args[0]
        if isinstance(layer, bnkeras.ChannelAffine):
            kwargs.pop("training", None)
        return layer(*args, **kwargs)

    # One clone with new layers throughout: the folded model shares nothing with `work`
    # (which may be the caller's model).
    folded = keras.models.clone_model(
        work, clone_function=clone_function, call_function=call_function, recursive=True
    )
    for layer, copy in copies:
        copy.set_weights(layer.get_weights())
    return folded


# ------------------------------------------------------------------- public API


def fold_batchnorm(model: keras.Model) -> FoldResult:
    """Folds every BN-family layer of `model` into its neighbours; returns a FoldResult.

    `model` is a Sequential or functional Keras model (nested models, shared layers
    and several inputs/outputs are fine; BNs inside nested subclassed models or
    custom layers stay as they are and are reported); it is left untouched.
    `FoldResult.model` is a new model without foldable BN whose inference outputs
    equal `model`'s (`training=False`) up to float rounding; `FoldResult.report`
    says what each BN became and why.
    """
    if not isinstance(model, keras.Model):
        raise FoldError(f"fold_batchnorm needs a keras.Model. Received: {type(model).__name__}")
    if not _is_functional(model) and not isinstance(model, keras.Sequential):
        raise FoldError(
            f"{type(model).__name__} {model.name!r} is a subclassed model: folding needs the "
            "layer graph of a Sequential or functional model."
        )
    # A functional model is only read; making a Sequential functional calls its
    # layers on new inputs, so that happens on a private copy.
    work = _as_functional(_private_copy(model)) if _has_sequential(model) else model
    plan = _plan(work)
    notes = []
    folded = _rebuild(work, plan, notes)
    report = FoldReport(
        entries=plan.entries,
        bn_before=count_bn(model),
        bn_after=count_bn(folded),
        params_before=model.count_params(),
        params_after=folded.count_params(),
        warnings=notes,
    )
    return FoldResult(model=folded, report=report)
