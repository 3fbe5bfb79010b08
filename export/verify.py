"""Numerical verification of exported models against the original Keras model."""

import dataclasses

import keras
import numpy as np

# Default tolerances by the model's compute dtype: a check passes where
# |candidate - reference| <= atol + rtol * |reference| for every element.
TOLERANCES = {
    "float32": (1e-4, 1e-5),
    "float64": (1e-4, 1e-5),
    "float16": (1e-2, 1e-2),
    "bfloat16": (5e-2, 5e-2),
}


@dataclasses.dataclass
class OutputCheck:
    output: str
    max_abs: float
    max_rel: float
    passed: bool


@dataclasses.dataclass
class FormatCheck:
    format: str
    outputs: list
    error: str | None = None

    @property
    def passed(self):
        return self.error is None and all(o.passed for o in self.outputs)


@dataclasses.dataclass
class VerifyReport:
    """Per format and output: max absolute and relative error against the reference."""

    checks: list
    rtol: float
    atol: float

    @property
    def passed(self):
        return all(check.passed for check in self.checks)

    def to_dict(self):
        return {
            "passed": self.passed,
            "rtol": self.rtol,
            "atol": self.atol,
            "formats": [
                {
                    "format": c.format,
                    "passed": c.passed,
                    "error": c.error,
                    "outputs": [dataclasses.asdict(o) for o in c.outputs],
                }
                for c in self.checks
            ],
        }

    def __str__(self):
        lines = [
            f"verification (rtol {self.rtol:g}, atol {self.atol:g}): {'PASSED' if self.passed else 'FAILED'}"
        ]
        for check in self.checks:
            if check.error:
                lines.append(f"  {check.format:12s} FAILED: {check.error}")
            for o in check.outputs:
                status = "ok" if o.passed else "FAILED"
                lines.append(
                    f"  {check.format:12s} {o.output:20s} max abs {o.max_abs:.3g}  max rel {o.max_rel:.3g}  {status}"
                )
        return "\n".join(lines)


def default_tolerances(model):
    dtype = keras.mixed_precision.Policy(model.dtype_policy.name).compute_dtype
    return TOLERANCES.get(dtype, TOLERANCES["float32"])


def as_list(outputs):
    if isinstance(outputs, dict):
        return [np.asarray(outputs[k]) for k in sorted(outputs)]
    if isinstance(outputs, (list, tuple)):
        return [np.asarray(o) for o in outputs]
    return [np.asarray(outputs)]


def compare(reference, candidate, names, rtol, atol):
    checks = []
    for name, ref, out in zip(names, reference, candidate, strict=True):
        ref = ref.astype(np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape:
            checks.append(OutputCheck(name, float("inf"), float("inf"), False))
            continue
        diff = np.abs(out - ref)
        finite = np.isfinite(out).all()
        max_abs = float(diff.max(initial=0.0)) if finite else float("inf")
        max_rel = float(
            (diff / np.maximum(np.abs(ref), np.finfo(np.float32).tiny)).max(initial=0.0)
        )
        passed = bool(finite and np.all(diff <= atol + rtol * np.abs(ref)))
        checks.append(OutputCheck(name, max_abs, max_rel if finite else float("inf"), passed))
    return checks


def output_names(model):
    """The name of the layer producing each output (tensor names are generated)."""
    names = []
    for i, tensor in enumerate(model.outputs):
        history = getattr(tensor, "_keras_history", None)
        names.append(history.operation.name if history else f"output_{i}")
    return names


def verify(model, inputs, *, folded=None, saved_model=None, onnx=None, rtol=None, atol=None):
    """Compares each given candidate with `model(inputs, training=False)`.

    Args:
        model: The original Keras model (the reference).
        inputs: A batch: an array, or a list of arrays for several inputs.
        folded: Optional Keras model (e.g. `fold_batchnorm(model).model`).
        saved_model: Optional path of a SavedModel with a `serve` or
            `serving_default` signature (as written by `model.export`).
        onnx: Optional path of an ONNX file, run in onnxruntime on the CPU.
        rtol, atol: Tolerances; by default 1e-4 / 1e-5 for float32 models,
            1e-2 / 1e-2 for float16 and 5e-2 / 5e-2 for bfloat16 compute.

    Returns:
        A `VerifyReport` with `.passed`, and per format and output the max
        absolute and max relative error.
    """
    default_rtol, default_atol = default_tolerances(model)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    names = output_names(model)
    reference = as_list(model(inputs, training=False))
    candidates = []
    if folded is not None:
        candidates.append(("keras", lambda: as_list(folded(inputs, training=False))))
    if saved_model is not None:
        candidates.append(("saved_model", lambda: run_saved_model(saved_model, inputs)))
    if onnx is not None:
        candidates.append(("onnx", lambda: run_onnx(onnx, inputs)))
    checks = []
    for name, run in candidates:
        try:
            checks.append(FormatCheck(name, compare(reference, run(), names, rtol, atol)))
        except Exception as error:  # a format that cannot even run fails verification
            checks.append(FormatCheck(name, [], error=f"{type(error).__name__}: {error}"))
    return VerifyReport(checks, rtol, atol)


def _input_list(inputs):
    return list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]


def run_saved_model(path, inputs):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(path))
    if hasattr(loaded, "serve"):  # written by model.export: one argument, a list for several inputs
        tensors = [tf.constant(x) for x in _input_list(inputs)]
        return as_list(loaded.serve(tensors if len(tensors) > 1 else tensors[0]))
    signature = loaded.signatures["serving_default"]
    names = list(signature.structured_input_signature[1])
    feeds = {n: tf.constant(x) for n, x in zip(names, _input_list(inputs), strict=True)}
    return as_list(signature(**feeds))


def run_onnx(path, inputs):
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("Verifying ONNX needs onnxruntime: pip install onnxruntime") from error
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        spec.name: np.asarray(x)
        for spec, x in zip(session.get_inputs(), _input_list(inputs), strict=True)
    }
    return session.run(None, feeds)
