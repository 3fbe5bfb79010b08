"""`export_model`: load, fold, write .keras / SavedModel / ONNX, verify, report.

Everything is written into a temporary directory beside the output directory and
renamed into place at the end, so an interrupted or failed export never leaves a
half-written output directory (and never touches an existing one unless
`overwrite=True`).
"""

import dataclasses
import json
import os
import re
import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bnkeras.export.fold import FoldError, fold_batchnorm
from bnkeras.export.formats import DEFAULT_OPSET, FILENAMES, FORMATS, MAX_OPSET, MIN_OPSET
from bnkeras.export.verify import FormatCheck, verify

_UNKNOWN_SIZE = 32  # fills undefined spatial input dimensions of random inputs


class ExportError(ValueError):
    """Bad input to export: the message names the problem and the fix."""


@dataclasses.dataclass
class ExportResult:
    out_dir: Path
    report: dict

    @property
    def passed(self):
        return self.report["verification"]["passed"]


def load_source(source):
    """(model, workdir or None) from a `.keras` file or a training work directory."""
    path = Path(source)
    if not path.exists():
        raise ExportError(
            f"{source} does not exist: give a .keras model file or a training work directory "
            "(a directory holding model.keras)."
        )
    workdir = None
    if path.is_dir():
        if not (path / "model.keras").is_file():
            raise ExportError(
                f"{source} is a directory but not a training work directory: it has no "
                "model.keras (finish a `bnkeras train` run first, or give a .keras file)."
            )
        workdir, path = path, path / "model.keras"
    elif path.suffix != ".keras":
        raise ExportError(
            f"{source} is not a Keras model file: give a .keras file (model.save(...))."
        )
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:
        missing = sorted(set(re.findall(r"Could not locate class '([^']+)'", str(error))))
        if missing:
            raise ExportError(
                f"{path} uses custom classes that are not registered: {', '.join(missing)}. "
                "Import the code that defines them (decorated with "
                "@keras.saving.register_keras_serializable()) before exporting."
            ) from None
        raise ExportError(f"{path} could not be loaded as a Keras model: {error}") from None
    if not isinstance(model, keras.Model):
        raise ExportError(f"{path} holds a {type(model).__name__}, not a Keras model.")
    return model, workdir


def random_inputs(model, batch_size, seed=0):
    """A random batch matching the model's inputs (list for several inputs)."""
    rng = np.random.default_rng(seed)
    batch = []
    for tensor in model.inputs:
        shape = [batch_size] + [_UNKNOWN_SIZE if d is None else d for d in tensor.shape[1:]]
        if "int" in str(tensor.dtype):
            batch.append(np.zeros(shape, tensor.dtype))
        else:
            batch.append(rng.normal(size=shape).astype(tensor.dtype))
    return batch[0] if len(batch) == 1 else batch


def _input_signature(model):
    return [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"input_{i}")
        for i, t in enumerate(model.inputs)
    ]


def write_keras(model, path):
    model.save(path)


def write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


def write_onnx(model, path, opset):
    try:
        import tf2onnx
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx") from error

    @tf.function
    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    tf2onnx.convert.from_function(
        serve, input_signature=_input_signature(model), opset=opset, output_path=str(path)
    )


def _interleaved_latency(models, inputs, repeats=10):
    runs = {name: tf.function(lambda x, m=m: m(x, training=False)) for name, m in models.items()}
    for run in runs.values():
        run(inputs)
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            tf.nest.map_structure(lambda t: t.numpy(), run(inputs))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def check_formats(formats):
    formats = [f.strip() for f in formats if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(
            f"Unknown export format {', '.join(unknown) or '(none)'}: valid formats are "
            f"{', '.join(FORMATS)}."
        )
    return formats


def check_opset(opset):
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"Unsupported ONNX opset {opset}: tf2onnx here supports {MIN_OPSET} to {MAX_OPSET} "
            f"(default {DEFAULT_OPSET})."
        )
    return opset


def export_model(
    source,
    out_dir,
    *,
    formats=FORMATS,
    opset=DEFAULT_OPSET,
    rtol=None,
    atol=None,
    batch_size=8,
    overwrite=False,
    inputs=None,
    log=print,
):
    """Folds the model of `source`, writes each format into `out_dir` and verifies it.

    Returns an `ExportResult` whose `report` is also written to `out_dir/report.json`;
    `result.passed` is False when any format disagrees with the unfolded model.
    Bad input raises `ExportError` before anything is written.
    """
    started = time.perf_counter()
    formats = check_formats(formats)
    if "onnx" in formats:
        check_opset(opset)
    if batch_size < 1:
        raise ExportError(f"--batch-size must be >= 1. Received: {batch_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise ExportError(f"{out_dir} already exists: choose another --out or pass --overwrite.")
    model, workdir = load_source(source)
    if inputs is None:
        inputs, input_kind = _workdir_batch(workdir, batch_size), "dataset batch"
        if inputs is None:
            inputs, input_kind = random_inputs(model, batch_size), "random inputs"
    else:
        input_kind = "given inputs"
    try:
        result = fold_batchnorm(model)
    except FoldError as error:
        raise ExportError(str(error)) from None
    folded = result.model
    log(str(result.report))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        paths, failures = {}, {}
        writers = {
            "keras": write_keras,
            "saved_model": write_saved_model,
            "onnx": lambda m, p: write_onnx(m, p, opset),
        }
        for fmt in formats:
            path = partial / FILENAMES[fmt]
            try:
                writers[fmt](folded, path)
                paths[fmt] = path
            except Exception as error:  # reported as a failed format, not a traceback
                failures[fmt] = f"writing {FILENAMES[fmt]} failed: {type(error).__name__}: {error}"
        reloaded = None
        if "keras" in paths:
            try:
                reloaded = keras.saving.load_model(paths["keras"], compile=False)
            except Exception as error:
                failures["keras"] = (
                    f"reloading {FILENAMES['keras']} failed: {type(error).__name__}: {error}"
                )
                del paths["keras"]
        report = verify(
            model,
            inputs,
            folded=reloaded,
            saved_model=paths.get("saved_model"),
            onnx=paths.get("onnx"),
            rtol=rtol,
            atol=atol,
        )
        report.checks.extend(
            FormatCheck(fmt, [], error=message) for fmt, message in failures.items()
        )
        log(str(report))
        timing = _interleaved_latency({"unfolded": model, "folded": folded}, inputs)
        log(
            f"inference latency (batch {batch_size}, median of 10): unfolded "
            f"{timing['unfolded'] * 1e3:.2f} ms, folded {timing['folded'] * 1e3:.2f} ms "
            f"({timing['unfolded'] / timing['folded']:.2f}x)"
        )
        summary = {
            "source": str(source),
            "formats": {fmt: FILENAMES[fmt] for fmt in formats},
            "opset": opset if "onnx" in formats else None,
            "inputs": input_kind,
            "batch_size": batch_size,
            "fold": result.report.to_dict(),
            "verification": report.to_dict(),
            "latency_ms": {k: v * 1e3 for k, v in timing.items()},
            "seconds": round(time.perf_counter() - started, 2),
        }
        (partial / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        _move_into_place(partial, out_dir, overwrite)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return ExportResult(out_dir, summary)


def _move_into_place(partial, out_dir, overwrite):
    backup = None
    if out_dir.exists():
        if not overwrite:
            raise ExportError(f"{out_dir} appeared during the export; nothing was replaced.")
        backup = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        os.replace(out_dir, backup)
    os.replace(partial, out_dir)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


def _workdir_batch(workdir, batch_size):
    """A real evaluation batch for a training work directory, when its data is available."""
    if workdir is None:
        return None
    try:
        from bnkeras.training.data import verification_batch
    except ImportError:
        return None
    return verification_batch(workdir, batch_size)
