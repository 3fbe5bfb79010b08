"""Numerical verification of exported models against the original Keras model.

Two modes. **End to end**: every format's outputs against the original's
(`training=False`) on the same inputs, and at a second size for every dimension
that is only known at run time. **Per layer**: every layer that absorbed a BN
against conv -> BN of the original on the same input, so that a wrong fold shows
even where a deep random model is too chaotic for the end-to-end comparison.

A check passes where `|candidate - reference| <= atol + rtol * |reference|` for
every element; its max relative error is taken over the elements larger than
`atol` (near zero any rounding is a large relative error). By default `atol` scales with the output: `atol_scale` times its
largest magnitude, and at least `NOISE_MULTIPLE` times what the model itself
reproduces: the difference between the original run eagerly and as a graph, and
the change of its output when the inputs move by a float32 rounding
(`PERTURBATION` of each value). Where that change alone exceeds the scaled atol,
the model is chaotic on these inputs (deep models with random BN statistics can
be): another runtime's rounding moves its output as much, so end to end cannot
tell a wrong model from rounding, and the per-layer checks decide.
Outputs after a final softmax (sigmoid) are compared as logits, recovered as the
centered log of the probabilities (their log-odds): probabilities of an
untrained classifier are nearly constant and would check nothing. A reference
that does not vary over the batch (or stays below `atol`) cannot detect a wrong
model: such a check fails, saying why.
"""

from __future__ import annotations

import dataclasses
import gc
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from bnkeras import _compat
from bnkeras._backend import to_numpy
from bnkeras.export.memory import frozen_heap
from bnkeras.model_layers import iter_layers

if TYPE_CHECKING:
    from bnkeras.export.fold import FoldReport

# (rtol, atol_scale) by the lowest compute precision among the model's layers.
TOLERANCES = {
    "float64": (1e-7, 1e-8),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}
_LOOSEST_FIRST = ("bfloat16", "float16", "float32", "float64")
NOISE_MULTIPLE = 4.0
# Relative change of each input value (random sign) that measures the model's own
# sensitivity to float32 rounding: a few float32 epsilons.
PERTURBATION = 4 * float(np.finfo(np.float32).eps)
# Logits recovered from float32 probabilities carry their rounding (a few float32
# epsilons), whatever the logits' scale: the atol of such outputs is at least this.
PROBABILITY_ATOL = 16 * float(np.finfo(np.float32).eps)
# Run-time (None) input dimensions are filled with the first entry; a model with
# such dimensions is checked again at the second (different sizes per axis).
UNKNOWN_SIZES = (32, (48, 40))
PIXEL_RANGE = (0.0, 255.0)  # inputs of models that start with Rescaling/Normalization
_PREPROCESSING = (keras.layers.Rescaling, keras.layers.Normalization)
_PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid")


@dataclasses.dataclass
class OutputCheck:
    output: str
    max_abs: float
    max_rel: float
    passed: bool
    atol: float = 0.0
    inputs: str = ""
    note: str | None = None
    peak: float = 0.0  # the reference's largest magnitude


@dataclasses.dataclass
class FormatCheck:
    format: str
    outputs: list
    error: str | None = None

    @property
    def passed(self):
        return self.error is None and all(o.passed for o in self.outputs)


@dataclasses.dataclass
class LayerCheck:
    """A layer that absorbed BN, against conv -> BN of the original on the same input."""

    layer: str
    bns: list
    max_abs: float
    max_rel: float
    passed: bool
    atol: float = 0.0
    peak: float = 0.0  # conv -> BN's largest magnitude


@dataclasses.dataclass
class VerifyReport:
    """Per format and output (and per folded layer): max abs / rel error and `.passed`."""

    checks: list
    rtol: float
    atol: float | None  # None: scaled per output (see OutputCheck.atol)
    dtypes: list = dataclasses.field(default_factory=list)
    tolerance_dtype: str = "float32"
    layers: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks) and all(c.passed for c in self.layers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "rtol": self.rtol,
            "atol": self.atol if self.atol is not None else "scaled per output",
            "compute_dtypes": self.dtypes,
            "tolerances_for": self.tolerance_dtype,
            "formats": [
                {
                    "format": c.format,
                    "passed": c.passed,
                    "error": c.error,
                    "outputs": [dataclasses.asdict(o) for o in c.outputs],
                }
                for c in self.checks
            ],
            "layers": [dataclasses.asdict(c) for c in self.layers],
            "notes": list(self.notes),
        }

    def __str__(self):
        atol = "scaled per output" if self.atol is None else f"{self.atol:g}"
        lines = [
            f"verification (rtol {self.rtol:g}, atol {atol}; tolerances for "
            f"{self.tolerance_dtype}, layers compute in {', '.join(self.dtypes)}): "
            f"{'PASSED' if self.passed else 'FAILED'}"
        ]
        for check in self.checks:
            if check.error:
                lines.append(f"  {check.format:12s} FAILED: {check.error}")
            for o in check.outputs:
                status = "ok" if o.passed else "FAILED"
                lines.append(
                    f"  {check.format:12s} {o.output:20s} {o.inputs:16s} max abs {o.max_abs:.3g}  "
                    f"max rel {o.max_rel:.3g}  (atol {o.atol:.2g})  {status}"
                    + (f": {o.note}" if o.note else "")
                )
        if self.layers:
            failed = [c for c in self.layers if not c.passed]
            # Worst relative to each layer's magnitude: max rel alone is led by
            # elements just above atol, where float32 rounding is a large fraction.
            worst = max(self.layers, key=lambda c: c.max_abs / max(c.peak, 1e-30))
            lines.append(
                f"  per layer: {len(self.layers) - len(failed)}/{len(self.layers)} folded layers "
                f"match conv->BN (worst {worst.layer}: max abs {worst.max_abs:.3g} of values up "
                f"to {worst.peak:.3g})"
            )
            lines += [
                f"  layer {c.layer} (from {', '.join(c.bns)}) FAILED: max abs {c.max_abs:.3g}, "
                f"max rel {c.max_rel:.3g}"
                for c in failed
            ]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


# ----------------------------------------------------------------- tolerances


def compute_dtypes(model):
    """The compute dtypes of the layers holding weights (the model's own if none)."""
    dtypes = {
        keras.mixed_precision.Policy(layer.dtype_policy.name).compute_dtype
        for layer in iter_layers(model)
        if layer.weights and not isinstance(layer, keras.Model)
    }
    return sorted(dtypes or {keras.mixed_precision.Policy(model.dtype_policy.name).compute_dtype})


def default_tolerances(model):
    """(rtol, atol_scale, dtype) for the lowest precision any layer computes in."""
    dtypes = compute_dtypes(model)
    dtype = next((d for d in _LOOSEST_FIRST if d in dtypes), "float32")
    return (*TOLERANCES[dtype], dtype)


# --------------------------------------------------------------------- inputs


def _input_consumers(model, tensor):
    if isinstance(model, keras.Sequential):
        return model.layers[:1]
    return [
        layer
        for layer in model.layers
        for node in _compat.inbound_nodes(layer)
        if any(t is tensor for t in node.input_tensors)
    ]


def expects_pixels(model, tensor):
    """True when `tensor` (a model input) feeds Rescaling or Normalization."""
    return any(isinstance(layer, _PREPROCESSING) for layer in _input_consumers(model, tensor))


def random_inputs(model, batch_size, seed=0, unknown_size=UNKNOWN_SIZES[0]):
    """A random batch for the model's inputs (a list for several inputs).

    Inputs that feed Rescaling/Normalization get pixels uniform in `PIXEL_RANGE`,
    others standard normal values; run-time dimensions get `unknown_size` (an
    int, or a tuple cycled over the unknown axes).
    """
    rng = np.random.default_rng(seed)
    sizes = unknown_size if isinstance(unknown_size, tuple) else (unknown_size,)
    batch = []
    for tensor in model.inputs:
        unknown = iter(sizes * len(tensor.shape))
        shape = [batch_size] + [next(unknown) if d is None else d for d in tensor.shape[1:]]
        if "int" in str(tensor.dtype):
            batch.append(np.zeros(shape, tensor.dtype))
        elif expects_pixels(model, tensor):
            batch.append(rng.uniform(*PIXEL_RANGE, size=shape).astype(tensor.dtype))
        else:
            batch.append(rng.normal(size=shape).astype(tensor.dtype))
    return batch[0] if len(batch) == 1 else batch


def input_batches(model, inputs, seed=1):
    """`inputs`, plus a random batch at other sizes when the model has run-time dimensions."""
    batches = [inputs]
    if any(d is None for t in model.inputs for d in t.shape[1:]):
        batch_size = len(_input_list(inputs)[0])
        batches += [random_inputs(model, batch_size, seed, size) for size in UNKNOWN_SIZES[1:]]
    return batches


def _shape_text(inputs):
    return "x".join(str(d) for d in np.shape(_input_list(inputs)[0])[1:])


# ----------------------------------------------------------------- comparison


def as_list(outputs):
    """Outputs (one, a list or a dict by name) as a list of NumPy arrays."""
    if isinstance(outputs, dict):
        return [to_numpy(outputs[k]) for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [to_numpy(o) for o in outputs]
    return [to_numpy(outputs)]


def output_names(model):
    """The name of the layer producing each output (tensor names are generated)."""
    names = []
    for i, tensor in enumerate(model.outputs):
        producer = _compat.keras_producer(tensor)
        names.append(producer.name if producer is not None else f"output_{i}")
    return names


def final_activations(model):
    """Per output: "softmax" or "sigmoid" when the producing layer ends with one."""
    found = []
    for tensor in model.outputs:
        layer = _compat.keras_producer(tensor)
        name = None
        if isinstance(layer, keras.layers.Softmax):
            name = "softmax"
        elif layer is not None and not isinstance(layer, keras.Model):
            name = getattr(getattr(layer, "activation", None), "__name__", None)
        found.append(name if name in _PROBABILITY_ACTIVATIONS else None)
    return found


def as_logits(values, activation):
    """Probabilities back to (centered) logits; other values unchanged (as float64)."""
    values = np.asarray(values, np.float64)
    if activation is None:
        return values
    tiny = np.finfo(np.float32).tiny
    if activation == "sigmoid":
        p = np.clip(values, tiny, 1.0 - np.finfo(np.float32).epsneg)
        return np.log(p) - np.log1p(-p)
    log_p = np.log(np.maximum(values, tiny))
    return log_p - log_p.mean(axis=-1, keepdims=True)


def _uninformative(reference, atol, across_batch):
    if reference.size == 0:
        return "the reference output is empty"
    if across_batch and reference.ndim > 0 and reference.shape[0] > 1:
        if float(np.ptp(reference, axis=0).max()) <= atol:
            return (
                "the reference output does not vary over the batch (by more than atol): "
                "this check cannot detect a wrong model"
            )
    elif float(np.abs(reference).max()) <= atol:
        return "the reference output is below atol: this check cannot detect a wrong model"
    return None


def compare_output(name, reference, candidate, rtol, atol, across_batch=True):
    """One `OutputCheck` of `candidate` against `reference` (float64 arrays).

    A reference that stays below `atol` (or, with `across_batch`, does not vary
    over the batch) gets a note: the check could not have failed."""
    if reference.shape != candidate.shape:
        note = f"shape {candidate.shape}, expected {reference.shape}"
        return OutputCheck(name, float("inf"), float("inf"), False, atol, note=note)
    if not np.isfinite(candidate).all():
        return OutputCheck(name, float("inf"), float("inf"), False, atol, note="non-finite values")
    diff = np.abs(candidate - reference)
    max_abs = float(diff.max(initial=0.0))
    # Relative to the elements above atol: near a zero reference any rounding is a
    # large relative error, and such elements are judged by atol alone.
    significant = np.abs(reference) > atol
    max_rel = float((diff[significant] / np.abs(reference[significant])).max(initial=0.0))
    note = _uninformative(reference, atol, across_batch)
    passed = bool(np.all(diff <= atol + rtol * np.abs(reference)))
    peak = float(np.abs(reference).max())
    return OutputCheck(name, max_abs, max_rel, passed, atol, note=note, peak=peak)


def _scaled_atol(reference, noise, atol, atol_scale, activation):
    """The absolute tolerance for one output (see the module docstring)."""
    if atol is None:
        atol = atol_scale * float(np.abs(reference).max(initial=0.0))
        if activation is not None:
            atol = max(atol, PROBABILITY_ATOL)
    return max(atol, NOISE_MULTIPLE * noise)


def _graph_noise(model, inputs, reference, activations):
    """Per output: max |original compiled - original eagerly| (a tf.function on
    TensorFlow, jax.jit on JAX; 0 on other backends)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        graph = tf.function(lambda x: model(x, training=False))
        return _differences(as_list(graph(inputs)), reference, activations)
    if backend == "jax":
        import jax

        compiled = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])
        outputs = compiled(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            inputs,
        )
        return _differences(as_list(outputs), reference, activations)
    return [0.0] * len(reference)


def _rounding_noise(model, inputs, reference, activations, seed=0):
    """Per output: max |original on inputs moved by `PERTURBATION` - original|
    (integer inputs stay as they are)."""
    rng = np.random.default_rng(seed)

    def nudge(x):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            return x
        signs = rng.choice(np.array([-1.0, 1.0], x.dtype), size=x.shape)
        return x * (1 + PERTURBATION * signs).astype(x.dtype)

    nudged = [nudge(x) for x in as_list(inputs)]
    outputs = as_list(model(nudged if isinstance(inputs, list) else nudged[0], training=False))
    return _differences(outputs, reference, activations)


def _differences(outputs, reference, activations):
    return [
        float(np.abs(as_logits(o, a) - r).max(initial=0.0))
        for o, r, a in zip(outputs, reference, activations, strict=True)
    ]


# --------------------------------------------------------------------- verify


def verify(
    model: keras.Model,
    inputs: np.ndarray | Sequence[np.ndarray],
    *,
    folded: keras.Model | None = None,
    saved_model: str | os.PathLike | None = None,
    onnx: str | os.PathLike | None = None,
    litert: str | os.PathLike | None = None,
    openvino: str | os.PathLike | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    fold_report: FoldReport | None = None,
    folded_layers: keras.Model | None = None,
) -> VerifyReport:
    """Compares each given candidate with `model(inputs, training=False)`.

    Args:
        model: The original Keras model (the reference).
        inputs: A batch: an array, or a list of arrays for several inputs. A model
            with run-time dimensions is also checked on a random batch of other sizes.
        folded: Optional Keras model (e.g. `fold_batchnorm(model).model`).
        saved_model: Optional path of a SavedModel with a `serve` or
            `serving_default` signature (as written by `model.export`).
        onnx: Optional path of an ONNX file, run in onnxruntime on the CPU.
        litert: Optional path of a LiteRT (`.tflite`) file, run in the LiteRT
            interpreter.
        openvino: Optional path of an OpenVINO IR (`.xml`) file, run in OpenVINO
            Runtime on the CPU.
        rtol: Relative tolerance; by default `TOLERANCES` for the lowest precision
            any layer computes in.
        atol: Absolute tolerance; by default scaled per output from `TOLERANCES`
            (module docstring). A given `atol` is absolute (still raised to the graph
            noise).
        fold_report: Optional `FoldReport` of `folded`: each folded layer of
            `folded` is then also checked against conv -> BN of `model`.
        folded_layers: Optional folded Keras model for those per-layer checks
            when `folded` is not given (e.g. only other formats are checked).

    Returns:
        A `VerifyReport` with `.passed`, and per format and output the max
        absolute and max relative error (and per folded layer).
    """
    default_rtol, atol_scale, dtype = default_tolerances(model)
    rtol = default_rtol if rtol is None else rtol
    report = VerifyReport([], rtol, atol, compute_dtypes(model), dtype)
    names, activations = output_names(model), final_activations(model)
    if any(activations):
        report.notes.append(
            "outputs after a final softmax/sigmoid are compared as logits (log-probabilities)"
        )
    runners = []  # (format, opener): each format is opened, checked and released in turn
    if folded is not None:
        runners.append(("keras", lambda: lambda x: as_list(folded(x, training=False))))
    if saved_model is not None:
        runners.append(("saved_model", lambda: open_saved_model(saved_model)))
    if onnx is not None:
        runners.append(("onnx", lambda: open_onnx(onnx)))
    if litert is not None:
        from bnkeras.export.litert import litert_runner  # imports verify

        runners.append(("litert", lambda: litert_runner(model, litert)))
    if openvino is not None:
        from bnkeras.export.openvino import openvino_runner  # imports verify

        runners.append(("openvino", lambda: openvino_runner(openvino)))
    batches = input_batches(model, inputs)
    references = [_reference(model, batch, activations, atol, atol_scale) for batch in batches]
    checks = {}
    with frozen_heap():  # the collections below scan only what the formats create
        for name, open_format in runners:
            checks[name] = _check_format(
                name, open_format, batches, references, names, activations, rtol
            )
            gc.collect()  # the opened format (weights, session, interpreter) before the next
    report.checks = list(checks.values())
    layers_of = folded if folded is not None else folded_layers
    if fold_report is not None and layers_of is not None:
        report.layers = verify_layers(model, layers_of, fold_report, inputs, rtol, atol_scale)
    _judge_void_outputs(report)
    return report


def _reference(model, batch, activations, atol, atol_scale):
    """(reference outputs as logits, atol per output, chaos note per output or None)
    of the original on `batch`."""
    raw = as_list(model(batch, training=False))
    reference = [as_logits(r, a) for r, a in zip(raw, activations, strict=True)]
    graph = _graph_noise(model, batch, reference, activations)
    rounding = _rounding_noise(model, batch, reference, activations)
    atols, notes = [], []
    for r, g, n, a in zip(reference, graph, rounding, activations, strict=True):
        atols.append(_scaled_atol(r, max(g, n), atol, atol_scale, a))
        scaled = _scaled_atol(r, g, None, atol_scale, a)
        notes.append(
            None
            if n <= scaled
            else (
                f"chaotic on these inputs: a float32 rounding of the inputs moves this output "
                f"by {n:.3g} (of values up to {float(np.abs(r).max(initial=0.0)):.3g}), "
                "more than its scaled atol; this check cannot detect a wrong model"
            )
        )
    return reference, atols, notes


def _check_format(name, open_format, batches, references, names, activations, rtol):
    """The `FormatCheck` of one format over every batch; the format is released after."""
    check = FormatCheck(name, [])
    try:
        run = open_format()
        for batch, (reference, atols, notes) in zip(batches, references, strict=True):
            outputs = run(batch)
            if len(outputs) != len(reference):
                check.error = f"{len(outputs)} outputs, expected {len(reference)}"
                return check
            for i, out in enumerate(outputs):
                result = compare_output(
                    names[i], reference[i], as_logits(out, activations[i]), rtol, atols[i]
                )
                result.note = notes[i] or result.note  # the cause, where chaotic
                result.inputs = _shape_text(batch)
                check.outputs.append(result)
    except Exception as error:  # a format that cannot even run fails verification
        check.error = f"{type(error).__name__}: {error}"
    return check


def _judge_void_outputs(report):
    """An output check that could not have failed passes only where per-layer checks
    ran and passed; it is named in the report either way."""
    void = [(c, o) for c in report.checks for o in c.outputs if o.note and o.passed]
    if not void:
        return
    names = ", ".join(sorted({f"{c.format}/{o.output}" for c, o in void}))
    if report.layers and all(layer.passed for layer in report.layers):
        report.notes.append(
            f"end to end ({names}) cannot detect a wrong model on these inputs; "
            "the per-layer checks decide"
        )
        return
    for _, output in void:
        output.passed = False
    report.notes.append(
        f"end to end ({names}) cannot detect a wrong model on these inputs, and "
        "per-layer checks failed or did not run: these outputs count as failed"
    )


# ------------------------------------------------------------------ per layer


def _fold_groups(fold_report):
    """{target layer name: (forward BN names, backward BN names)} of the folds."""
    groups = {}
    for entry in fold_report.folded:
        forward, backward = groups.setdefault(entry.into, ([], []))
        (forward if entry.action == "folded_forward" else backward).append(entry.bn)
    return groups


def _layer_inputs(model, inputs, wanted, found):
    """Fills `found[name]` with the input value of each layer named in `wanted`
    (called once), looking into nested functional/Sequential models."""
    from bnkeras.export.fold import _as_functional, _Graph

    graph = _Graph(_as_functional(model))
    probes = []  # (layer name or nested model, its input tensors)
    for layer in graph.model.layers:
        calls = graph.calls_of(layer)
        if len(calls) != 1:
            continue
        if layer.name in wanted:
            probes.append((layer.name, calls[0].input_tensors))
        elif isinstance(layer, keras.Model) and any(
            inner.name in wanted for inner in iter_layers(layer)
        ):
            probes.append((layer, calls[0].input_tensors))
    if not probes:
        return
    tensors = [t for _, group in probes for t in group]
    model_inputs = graph.model.inputs
    probe = keras.Model(model_inputs if len(model_inputs) > 1 else model_inputs[0], tensors)
    values = probe(inputs, training=False)
    values = iter(as_list(values) if len(tensors) > 1 else [to_numpy(values)])
    for key, group in probes:
        args = [next(values) for _ in group]
        if isinstance(key, str):
            found[key] = args[0]
        else:
            _layer_inputs(key, args if len(args) > 1 else args[0], wanted, found)


def verify_layers(model, folded, fold_report, inputs, rtol, atol_scale):
    """One `LayerCheck` per layer of `folded` that absorbed BN (see `verify`)."""
    groups = _fold_groups(fold_report)
    first = {target: (fwd or [target])[0] for target, (fwd, _) in groups.items()}
    found = {}
    _layer_inputs(model, inputs, set(first.values()), found)
    original = {layer.name: layer for layer in iter_layers(model)}
    rebuilt = {layer.name: layer for layer in iter_layers(folded)}
    checks = []
    for target, (forward, backward) in groups.items():
        x = found.get(first[target])
        if x is None or target not in rebuilt:
            continue
        y = x
        for bn in forward:
            y = original[bn](y, training=False)
        y = original[target](y)
        for bn in backward:
            y = original[bn](y, training=False)
        reference = to_numpy(y).astype(np.float64)
        candidate = to_numpy(rebuilt[target](x)).astype(np.float64)
        peak = float(np.abs(reference).max(initial=0.0))
        atol = atol_scale * peak
        # Deep activations of a random model may not vary over the batch; the
        # kernel still multiplies them, so only an all-below-atol output is void.
        check = compare_output(target, reference, candidate, rtol, atol, across_batch=False)
        passed = check.passed and check.note is None
        checks.append(
            LayerCheck(target, forward + backward, check.max_abs, check.max_rel, passed, atol, peak)
        )
    return checks


# -------------------------------------------------------------------- runners


def _input_list(inputs):
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def open_saved_model(path):
    """A callable running the SavedModel at `path` on a batch (list of outputs)."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if hasattr(loaded, "serve"):  # written by model.export: one argument, a list for several inputs

        def run(inputs):
            tensors = [tf.constant(x) for x in _input_list(inputs)]
            return as_list(loaded.serve(tensors if len(tensors) > 1 else tensors[0]))

        return run
    signature = loaded.signatures["serving_default"]
    names = list(signature.structured_input_signature[1])

    def run_signature(inputs):
        feeds = {n: tf.constant(x) for n, x in zip(names, _input_list(inputs), strict=True)}
        return as_list(signature(**feeds))

    return run_signature


def open_onnx(path):
    """A callable running the ONNX file at `path` in onnxruntime on the CPU."""
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("Verifying ONNX needs onnxruntime: pip install onnxruntime") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(inputs):
        feeds = {
            spec.name: np.asarray(x)
            for spec, x in zip(session.get_inputs(), _input_list(inputs), strict=True)
        }
        return session.run(None, feeds)

    return run
