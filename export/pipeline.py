"""`export_model`: load, fold, write .keras / SavedModel / ONNX / LiteRT, verify, report.

Everything is written into a temporary directory beside the output directory and
moved into place at the end (`bnkeras.export.outdir`), so an interrupted or failed
export never leaves a half-written output directory, and `overwrite=True` replaces
only a previous export, atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from bnkeras import _logging
from bnkeras._timing import interleaved_times, paired_ratio
from bnkeras.errors import Error
from bnkeras.export import outdir
from bnkeras.export.fold import FoldError, fold_batchnorm
from bnkeras.export.formats import (
    COMPANIONS,
    DEFAULT_FORMATS,
    DEFAULT_OPSET,
    FILENAMES,
    FORMATS,
    MAX_OPSET,
    MIN_OPSET,
)
from bnkeras.export.litert import (
    check_int8,
    compare_speed,
    write_litert,
    write_litert_int8,
)
from bnkeras.export.memory import collecting_cycles, frozen_heap, peak_rss_mb, release_memory
from bnkeras.export.openvino import INSTALL_HINT as OPENVINO_HINT
from bnkeras.export.openvino import available as openvino_available
from bnkeras.export.openvino import write_openvino
from bnkeras.export.verification import FormatCheck, expects_pixels, random_inputs, verify
from bnkeras.export.writers import write_keras, write_onnx, write_saved_model
from bnkeras.training.files import files_under

logger = logging.getLogger(__name__)

LOG_NAME = "export.log"  # what the converters print
INT8_NAME = "model_int8.tflite"
# Reading a run's data: its problems (a dataset not there, a damaged config, unreadable
# files) are bnkeras.Errors or I/O errors; any other exception is a bug and raises.
_DATA_ERRORS = (Error, OSError, StopIteration, tf.errors.OpError)
_NOISY_LOGGERS = ("tf2onnx", "absl", "tensorflow")


class ExportError(Error, ValueError):
    """Bad input to export: the message names the problem and the fix."""


@dataclasses.dataclass
class ExportResult:
    """The result of `export_model`: the export directory `out_dir`, the `report` written to
    `out_dir/report.json` (a dict), and `.passed`: every format verified (and the int8
    model within its allowed accuracy drop)."""

    out_dir: Path
    report: dict

    @property
    def passed(self) -> bool:
        int8 = self.report.get("int8") or {"passed": True}
        return self.report["verification"]["passed"] and int8["passed"]


def load_source(source):
    """(model, workdir or None) from a `.keras` file or a training work directory."""
    from bnkeras.training import workdir as run_dir

    path = Path(source)
    if not path.exists():
        raise ExportError(
            f"{source} does not exist: give a .keras model file or a training work directory "
            "(a directory holding model.keras)."
        )
    if path.is_file() and run_dir.is_legacy_hdf5(path):
        raise ExportError(run_dir.legacy_hdf5_message(path))
    if path.is_file() and path.suffix != ".keras":
        raise ExportError(
            f"{source} is not a Keras model file: give a .keras file (model.save(...))."
        )
    if path.is_dir() and not (run_dir.is_run(path) or (path / run_dir.MODEL).is_file()):
        raise ExportError(
            f"{source} is a directory but not a training work directory: it has no "
            "model.keras, config.yaml or checkpoints (give a .keras file, or the --workdir of a "
            "`bnkeras train` run)."
        )
    try:
        model = run_dir.load_model(path) if path.is_dir() else run_dir.load_model_file(path)
    except run_dir.WorkdirError as error:
        raise ExportError(str(error)) from None
    if not isinstance(model, keras.Model):
        raise ExportError(f"{path} holds a {type(model).__name__}, not a Keras model.")
    return model, path if path.is_dir() else None


def check_path(name, value):
    """`source` and `out_dir` are paths (str or os.PathLike), never None or a model."""
    if isinstance(value, (str, os.PathLike)) and str(value):
        return value
    hint = (
        " (save a model in memory first: model.save('model.keras'), and export that file)"
        if isinstance(value, keras.Model)
        else ""
    )
    raise ExportError(
        f"Argument `{name}` of export_model must be a path (str or os.PathLike){hint}. "
        f"Received: {name}={type(value).__name__ if isinstance(value, keras.Model) else repr(value)}"
    )


def check_formats(formats):
    formats = list(dict.fromkeys(f.strip() for f in formats if f.strip()))  # each once
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ExportError(
            f"Unknown export format {', '.join(unknown) or '(none)'}: valid formats are "
            f"{', '.join(FORMATS)}."
        )
    if "openvino" in formats and not openvino_available():
        raise ExportError(f"--formats openvino: {OPENVINO_HINT}.")
    return formats


def check_opset(opset):
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ExportError(
            f"Unsupported ONNX opset {opset} (--opset): tf2onnx here supports opsets in [{MIN_OPSET}, "
            f"{MAX_OPSET}] (default {DEFAULT_OPSET}). Received: opset={opset!r}"
        )
    return opset


def check_tolerance(name, value):
    """None (the default for the model's dtype) or a finite number >= 0."""
    if value is None:
        return None
    if not (math.isfinite(value) and value >= 0):
        raise ExportError(
            f"--{name} must be a finite number >= 0 (e.g. 1e-4). Received: {name}={value}"
        )
    return float(value)


MAX_BATCH_SIZE = 4096  # the verification batch (random inputs or the run's evaluation data)


def check_batch_size(batch_size):
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, int)
        or not 1 <= batch_size <= MAX_BATCH_SIZE
    ):
        raise ExportError(
            f"--batch-size must be an integer in [1, {MAX_BATCH_SIZE}]. "
            f"Received: batch_size={batch_size!r}"
        )
    return batch_size


def check_int8_max_drop(value):
    """A number of top-1 accuracy points in [0, 100]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise ExportError(
            "--int8-max-drop must be a number of accuracy points in [0, 100]. "
            f"Received: int8_max_drop={value!r}"
        )
    return float(value)


def _check_out(source, out_dir, overwrite):
    """The real path of `out_dir`, after cleaning what killed exports left beside it."""
    known = (*FILENAMES.values(), *(f for c in COMPANIONS.values() for f in c), LOG_NAME, INT8_NAME)
    with _disk_errors(out_dir):
        outdir.clean_leftovers(Path(os.path.realpath(out_dir)))
    try:
        return outdir.check_out_dir(source, out_dir, overwrite, known)
    except outdir.OutDirError as error:
        raise ExportError(str(error)) from None


def export_model(
    source: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] = DEFAULT_FORMATS,
    opset: int = DEFAULT_OPSET,
    rtol: float | None = None,
    atol: float | None = None,
    batch_size: int = 8,
    overwrite: bool = False,
    inputs: np.ndarray | Sequence[np.ndarray] | None = None,
    int8: bool = False,
    int8_max_drop: float = 1.0,
    calibration_batches: int = 16,
) -> ExportResult:
    """Folds the model of `source`, writes each format into `out_dir` and verifies it.

    Returns an `ExportResult` whose `report` is also written to `out_dir/report.json`;
    `result.passed` is False when any format disagrees with the unfolded model.
    Bad input (including an `out_dir` that is the source, contains it, or holds
    anything but an empty directory or a previous export) raises `ExportError`
    before anything is written; so does a full or read-only disk, after removing
    what this export had written. With `overwrite=True` a previous export is
    replaced atomically (see `bnkeras.export.outdir`).

    With `int8=True` (a classifier: one output of 2 or more classes) also writes `model_int8.tflite`,
    calibrated on `calibration_batches` batches of the run's training data, and
    fails when its top-1 accuracy on the run's evaluation set is more than
    `int8_max_drop` points below the float LiteRT model's (without a run's data:
    when more than `int8_max_drop` percent of top-1 predictions change).

    The verification inputs, the fold report, the verification and timing results
    are logged at INFO level through `logging.getLogger(__name__)`. What the converters
    log through Python's logging goes to `out_dir/export.log`; their C++ output does too
    in the `bnkeras export` command, while a call from a program leaves its standard
    output and error alone (and the process's garbage collector and seeds as it found them).
    """
    started = time.perf_counter()
    check_path("source", source)
    check_path("out_dir", out_dir)
    formats = check_formats(formats)
    check_opset(opset)  # checked even without onnx: a wrong option is never ignored
    rtol, atol = check_tolerance("rtol", rtol), check_tolerance("atol", atol)
    check_batch_size(batch_size)
    int8_max_drop = check_int8_max_drop(int8_max_drop)
    if int8:
        formats = formats if "litert" in formats else [*formats, "litert"]
    out = _check_out(source, out_dir, overwrite)
    model, workdir = load_source(source)
    classes = _stored_classes(workdir)
    if int8:
        check_classifier(model)
    inputs, input_kind = _verification_inputs(model, workdir, inputs, batch_size)
    result = _fold(model)
    # Collections (after each format) scan only what the export creates.
    with frozen_heap(), _disk_errors(out_dir), outdir.partial_dir(out) as partial:
        paths, failures = _write_formats(result.model, formats, partial, opset)
        report = _verify(model, inputs, paths, failures, rtol, atol, result)
        logger.info(str(report))
        quantized = None
        if int8 and "litert" in paths:
            data = _int8_data(workdir, batch_size, calibration_batches, inputs)
            quantized = _export_int8(
                model, result.model, paths["litert"], data, int8_max_drop, paths.get("saved_model")
            )
            logger.info(quantized["line"])
        latency = measure_latency(model, result.model, inputs)
        logger.info(latency.pop("line"))
        summary = {
            outdir.EXPORT_FIELD: outdir.EXPORT_VERSION,
            "source": str(source),
            "formats": {fmt: FILENAMES[fmt] for fmt in formats},
            "files": _written(partial, formats) + [LOG_NAME] + [INT8_NAME] * int8,
            "opset": opset if "onnx" in formats else None,
            "inputs": input_kind,
            "classes": classes,
            "batch_size": batch_size,
            "fold": result.report.to_dict(),
            "verification": report.to_dict(),
            "latency": latency,
            "int8": quantized,
            "peak_rss_mb": round(peak_rss_mb()),
            "seconds": round(time.perf_counter() - started, 2),
        }
        # Every file of the export at any depth: what a later --overwrite may replace.
        summary["tree"] = sorted({*files_under(partial), outdir.REPORT} - {outdir.MARKER})
        (partial / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
        _check_out(source, out_dir, overwrite)  # nothing else appeared there meanwhile
        outdir.move_into_place(partial, out)
    return ExportResult(Path(out_dir), summary)


def _written(partial, formats):
    """The files of `formats` in `partial`: each main file and the companions written."""
    names = []
    for fmt in formats:
        companions = [c for c in COMPANIONS.get(fmt, ()) if (partial / c).exists()]
        names += [FILENAMES[fmt], *companions]
    return names


def _fold(model):
    try:
        result = fold_batchnorm(model)
    except FoldError as error:
        raise ExportError(str(error)) from None
    if result.report.bn_before == 0:
        logger.info(
            "nothing to fold: the model has no BN layers; exporting and verifying it as it is"
        )
    else:
        logger.info(str(result.report))
    return result


def _write_formats(folded, formats, partial, opset):
    """Writes each format into `partial`: ({format: path}, {format: failure message}).

    Third-party output (tf2onnx tracebacks, TensorFlow's converter logs) goes to
    `partial/export.log` instead of the screen (`quiet_output`: the C++ logs in the
    `bnkeras` command only). A full or read-only disk raises.
    """
    writers = {
        "keras": write_keras,
        "saved_model": write_saved_model,
        "onnx": lambda m, p: write_onnx(m, p, opset),
        # Converted from the SavedModel when there is one (written before it, below).
        "litert": lambda m, p: write_litert(m, p, paths.get("saved_model")),
        "openvino": write_openvino,
    }
    paths, failures = {}, {}
    with quiet_output(partial / LOG_NAME), collecting_cycles():
        for fmt in sorted(formats, key=FORMATS.index):
            path = partial / FILENAMES[fmt]
            try:
                writers[fmt](folded, path)
                paths[fmt] = path
            except Exception as error:  # reported as a failed format, not a traceback
                if disk_error(error):
                    raise
                logger.debug("writing %s failed", path.name, exc_info=True)
                failures[fmt] = f"writing {FILENAMES[fmt]} failed: {type(error).__name__}: {error}"
            release_memory()
    return paths, failures


def _verify(model, inputs, paths, failures, rtol, atol, result):
    reloaded = None
    if "keras" in paths:
        try:
            reloaded = keras.saving.load_model(paths["keras"], compile=False)
        except Exception as error:
            failures["keras"] = (
                f"reloading {FILENAMES['keras']} failed: {type(error).__name__}: {error}"
            )
            del paths["keras"]
    # The LiteRT interpreter prints notices on the C++ streams: kept in the export log.
    quiet = (
        quiet_output(paths["litert"].parent / LOG_NAME)
        if "litert" in paths
        else contextlib.nullcontext()
    )
    with quiet:
        report = verify(
            model,
            inputs,
            folded=reloaded,
            saved_model=paths.get("saved_model"),
            onnx=paths.get("onnx"),
            litert=paths.get("litert"),
            openvino=paths.get("openvino"),
            rtol=rtol,
            atol=atol,
            fold_report=result.report,
            folded_layers=result.model,
        )
    report.checks.extend(FormatCheck(fmt, [], error=message) for fmt, message in failures.items())
    del reloaded
    release_memory()
    return report


def _stored_classes(workdir):
    """The class names the run in `workdir` stored (None for a .keras file or an older run)."""
    if workdir is None:
        return None
    from bnkeras.training import workdir as run_dir

    try:
        stored = run_dir.read_classes(workdir)
    except run_dir.WorkdirError as error:
        raise ExportError(str(error)) from None
    return stored and stored[0]


def _verification_inputs(model, workdir, inputs, batch_size):
    """(batch, description) for verification, saying on screen which inputs are used.

    The run's data is read with its classes: data with another class set is refused
    (`ExportError`); data that cannot be read gives random inputs instead.
    """
    if inputs is not None:
        return inputs, "given inputs"
    reason = "the source is a .keras file"
    if workdir is not None:
        from bnkeras.training.data import ClassesChanged
        from bnkeras.training.workdir import verification_batch

        try:
            batch = verification_batch(workdir, batch_size)
            logger.info(
                f"verification inputs: a batch of {batch_size} from the run's evaluation data"
            )
            return batch, "dataset batch"
        except ClassesChanged as error:
            raise ExportError(str(error)) from None
        except _DATA_ERRORS as error:
            reason = f"the run's data could not be read ({type(error).__name__}: {error})"
            reason = reason.splitlines()[0]
    pixels = [expects_pixels(model, tensor) for tensor in model.inputs]
    kind = "random pixels in 0-255" if all(pixels) else "random normal inputs"
    if any(pixels) and not all(pixels):
        kind = "random inputs (pixels in 0-255 for the image inputs, normal values for the rest)"
    logger.info(f"verification inputs: {kind}, batch {batch_size}, because {reason}")
    return random_inputs(model, batch_size), f"random inputs ({reason})"


def check_classifier(model):
    """int8 is judged by top-1: the model must have one (batch, classes) output with at
    least two classes (the top-1 of a single unit is always 0: a check that cannot fail)."""
    shapes = [tuple(t.shape) for t in model.outputs]
    if len(shapes) != 1 or len(shapes[0]) != 2:
        raise ExportError(
            "--int8 is checked by top-1 accuracy and needs a classifier with one output of "
            f"shape (batch, classes). Received: outputs={shapes}. Export without --int8."
        )
    if shapes[0][1] is not None and shapes[0][1] < 2:
        raise ExportError(
            "--int8 is checked by top-1 accuracy, which cannot fail for a single output unit "
            "(its top-1 is always unit 0): it needs a classifier with at least 2 classes. "
            f"Received: outputs={shapes}. Export without --int8."
        )


def _int8_data(workdir, batch_size, calibration_batches, inputs):
    """(calibration batches, [(inputs, labels)], description) for the int8 model."""
    reason = "the source is a .keras file"
    if workdir is not None:
        from bnkeras.training.data import ClassesChanged
        from bnkeras.training.workdir import load_run_data

        try:
            data = load_run_data(workdir, batch_size)
            calibration = [x.numpy() for x, _ in data.train.take(calibration_batches)]
            evaluation = [(x.numpy(), y.numpy().argmax(-1)) for x, y in data.eval]
            return calibration, evaluation, "run's training data / evaluation set"
        except ClassesChanged as error:
            raise ExportError(str(error)) from None
        except _DATA_ERRORS as error:
            reason = f"the run's data could not be read ({type(error).__name__}: {error})"
    return [inputs], [(inputs, None)], f"verification inputs ({reason.splitlines()[0]})"


def _export_int8(model, folded, float_path, data, max_drop, saved_model=None):
    """Writes and checks `model_int8.tflite` beside the float `float_path` (converted
    from `saved_model` when given): a report entry."""
    calibration, evaluation, description = data
    int8_path = float_path.parent / INT8_NAME
    try:
        with quiet_output(float_path.parent / LOG_NAME):
            write_litert_int8(folded, int8_path, calibration, saved_model)
            check = check_int8(model, float_path, int8_path, evaluation, max_drop)
            speed = compare_speed(model, float_path, int8_path, evaluation[0][0])
    except Exception as error:  # a failed int8 model fails the export, not a traceback
        if disk_error(error):
            raise
        message = f"{type(error).__name__}: {error}".splitlines()[0]
        return {"passed": False, "error": message, "line": f"int8 LiteRT FAILED: {message}"}
    size = int8_path.stat().st_size / float_path.stat().st_size
    check.update(speed, data=description, size_ratio=size)
    if "accuracy_drop_points" in check:
        verdict = (
            f"accuracy {100 * check['accuracy_float']:.2f}% -> "
            f"{100 * check['accuracy_int8']:.2f}% ({check['accuracy_drop_points']:.2f} points "
            f"drop, limit {max_drop:g})"
        )
    else:
        verdict = f"top-1 agreement {100 * check['top1_agreement']:.1f}% (no labels)"
    check["line"] = (
        f"int8 LiteRT ({check['examples']} examples of the {description}): {verdict}, "
        f"{'PASSED' if check['passed'] else 'FAILED'}; size {size:.2f}x of float, "
        f"speed {check['int8_speedup']:.2f}x of float (indicative)"
    )
    return check


def measure_latency(model, folded, inputs, budget_seconds=5.0):
    """Interleaved inference timing of the unfolded and folded model, as a report entry.

    The number of rounds fits a time budget (at least 3, at most 100); the
    speed-up is the median of round-by-round ratios, and a ratio whose
    interquartile range contains 1 is reported as no measurable difference.
    """
    runs = {
        name: tf.function(lambda x, m=m: m(x, training=False))
        for name, m in (("unfolded", model), ("folded", folded))
    }
    candidates = {
        name: (lambda run=run: tf.nest.map_structure(lambda t: t.numpy(), run(inputs)))
        for name, run in runs.items()
    }
    first = interleaved_times(candidates, 1, warmup=1)
    per_round = sum(t[0] for t in first.values())
    rounds = int(min(100, max(3, budget_seconds // max(per_round, 1e-9))))
    times = interleaved_times(candidates, rounds, warmup=0)
    ratio, (low, high) = paired_ratio(times["unfolded"], times["folded"])
    medians = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    verdict = latency_verdict(ratio, low, high)
    line = (
        f"inference latency (indicative; batch {len(tf.nest.flatten(inputs)[0])}, medians of "
        f"{rounds} interleaved rounds): unfolded {medians['unfolded']:.2f} ms, folded "
        f"{medians['folded']:.2f} ms; {verdict}"
    )
    return {
        "unfolded_ms": medians["unfolded"],
        "folded_ms": medians["folded"],
        "speedup": ratio,
        "speedup_interquartile": [low, high],
        "rounds": rounds,
        "line": line,
    }


def latency_verdict(ratio, low, high):
    """Words for a speed-up `ratio` whose round-by-round interquartile range is low-high."""
    if low <= 1.0 <= high:
        return f"no measurable difference (ratio {low:.2f}-{high:.2f})"
    return f"folded {ratio:.2f}x the speed of unfolded (interquartile {low:.2f}-{high:.2f})"


_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
_DISK_MESSAGES = ("No space left on device", "Read-only file system", "Disk quota exceeded")


def disk_error(error):
    """The reason when `error` (or what caused it) is a full or read-only disk, else None."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _DISK_ERRNOS:
            return error.strerror or os.strerror(error.errno)
        for message in _DISK_MESSAGES:
            if message in str(error):
                return message
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def _disk_errors(out_dir):
    """Turns a full or read-only disk under `out_dir` into a one-line `ExportError`."""
    try:
        yield
    except ExportError:
        raise
    except Exception as error:
        reason = disk_error(error)
        if reason is None:
            raise
        raise ExportError(
            f"cannot write the export to --out {out_dir}: {reason}. Received: --out={out_dir}. "
            "Free space or choose a writable --out; what this export wrote was removed and a "
            "previous export there is unchanged."
        ) from None


@contextlib.contextmanager
def quiet_output(log_path):
    """Sends what converters log through Python's logging to `log_path`; in the `bnkeras`
    command also their C++ logs on file descriptors 1 and 2. A library call leaves the
    file descriptors alone: a program's own prints during `export_model` reach its output.
    """
    if not _logging.in_command():
        with _loggers_to(log_path):
            yield
        return
    with _loggers_to(log_path), _file_descriptors_to(log_path):
        yield


@contextlib.contextmanager
def _loggers_to(log_path):
    """The converters' Python loggers write to `log_path` (only) for the block."""
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    noisy = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    saved = [(lg, lg.handlers[:], lg.propagate) for lg in noisy]
    for lg in noisy:
        lg.handlers, lg.propagate = [handler], False
    try:
        yield
    finally:
        for lg, handlers, propagate in saved:
            lg.handlers, lg.propagate = handlers, propagate
        handler.close()


@contextlib.contextmanager
def _file_descriptors_to(log_path):
    """File descriptors 1 and 2 write to `log_path` for the block (a process-wide measure:
    the `bnkeras` command's only)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved_fds = [os.dup(1), os.dup(2)]
    with open(log_path, "ab", buffering=0) as file:
        os.dup2(file.fileno(), 1)
        os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        for fd, saved_fd in zip((1, 2), saved_fds, strict=True):
            os.dup2(saved_fd, fd)
            os.close(saved_fd)
