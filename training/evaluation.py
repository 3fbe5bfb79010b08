"""`evaluate(source)`: loss, top-1 and top-5 of a trained model on an evaluation split."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from bnkeras.training import workdir as run_dir
from bnkeras.training.config import DEFAULTS, MAX_IMAGE_SIZE, MAX_INT32
from bnkeras.training.data import load_data
from bnkeras.training.files import atomic_write_text
from bnkeras.training.metrics import top5_metrics
from bnkeras.training.trainer import TrainingError, check_batch_memory

# The field that marks a metrics file written by `evaluate`: `--json` replaces an
# existing file only when it is one of those (or has exactly their keys, as the files of
# bnkeras versions before the field had).
METRICS_FIELD = "bnkeras_evaluate"
METRICS_VERSION = 1
_UNMARKED_KEYS = {"loss", "top1", "top5", "examples"}


def is_metrics_file(path):
    """True when `path` is a metrics JSON that `bnkeras evaluate --json` wrote."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and (METRICS_FIELD in data or set(data) == _UNMARKED_KEYS)


def _run_holding(path):
    """(run folder, path relative to it) when `path` is a file of a training run, else None."""
    for folder in path.parents:
        if run_dir.is_run(folder):
            relative = path.relative_to(folder)
            if relative.parts[0] in (*run_dir.RUN_FILES, *run_dir.RUN_DIRS) or (
                len(relative.parts) == 1 and relative.name.startswith(".")
            ):
                return folder, relative
            return None
    return None


def _json_target(json_path, source):
    """The real path to write --json to, checked before any evaluation work (and again
    before writing): never the evaluated model, a file of a run, or an existing file
    that is not a metrics file of `evaluate`. Its folder is created."""
    path = Path(json_path)
    real = Path(os.path.realpath(path))
    if real.is_dir():
        raise TrainingError(f"--json {json_path} is a directory: give a file path.")
    if real == Path(os.path.realpath(source)):
        raise TrainingError(
            f"--json {json_path} is the model being evaluated: an evaluation never replaces "
            "its model. Give a new file path, e.g. --json metrics.json."
        )
    held = _run_holding(real)
    if held is not None:
        raise TrainingError(
            f"--json {json_path} is {held[1]} of the training run {held[0]}: the metrics are "
            "never written over a run's files. Give a path outside the run's files, e.g. "
            "--json eval.json."
        )
    if real.exists() and not is_metrics_file(real):
        raise TrainingError(
            f"--json {json_path} exists and is not a metrics file written by bnkeras evaluate: "
            "it is left as it is. Give a new file path, or move that file away."
        )
    try:
        real.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrainingError(
            f"--json {json_path}: cannot create its folder ({error.strerror or error})."
        ) from None
    if not os.access(real.parent, os.W_OK):
        raise TrainingError(f"--json {json_path}: its folder {real.parent} is not writable.")
    return real


def write_metrics(path, metrics):
    """Writes `metrics` as JSON atomically; a full or read-only disk is a `TrainingError`."""
    try:
        atomic_write_text(Path(path), json.dumps(metrics, indent=2) + "\n")
    except OSError as error:
        raise TrainingError(f"Cannot write --json {path}: {error.strerror or error}.") from None


def _check_size(name, value, high):
    """None, or `value` as an int in [1, high]; else a `TrainingError` naming the option."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise TrainingError(
            f"--{name.replace('_', '-')} must be an integer in [1, {high}]. "
            f"Received: {name}={value!r}"
        )
    return value


def _check_image_model(model, source, image_size):
    """Evaluate feeds square RGB images: a model that cannot take them, or an
    --image-size that its fixed input size refuses, is a `TrainingError`."""
    shapes = [tuple(tensor.shape) for tensor in model.inputs]
    if len(shapes) != 1 or len(shapes[0]) != 4 or shapes[0][3] not in (None, 3):
        raise TrainingError(
            f"{source} is not an image classifier with one input of shape (batch, height, "
            f"width, 3): evaluate feeds RGB images. Received: inputs={shapes}"
        )
    height, width = shapes[0][1:3]
    fixed = [size for size in (height, width) if size is not None]
    if len(set(fixed)) > 1:
        raise TrainingError(
            f"{source} takes images of {height}x{width}: evaluate feeds square images. "
            f"Received: inputs={shapes}"
        )
    if image_size is not None and fixed and fixed[0] != image_size:
        raise TrainingError(
            f"--image-size {image_size} does not fit {source}, which takes images of "
            f"{height}x{width}: give --image-size {fixed[0]} or leave it out. "
            f"Received: image_size={image_size}"
        )


def _model_file_source(path, dataset, image_size):
    if dataset is None:
        raise TrainingError(
            f"Evaluating the model file {path} needs --dataset (and --data-dir if not embedded)."
        )
    model = run_dir.load_model_file(path)
    _check_image_model(model, path, image_size)
    data_config = copy.deepcopy(DEFAULTS["data"])
    height, width = model.inputs[0].shape[1:3]
    if height is None or width is None or height != width:
        if image_size is None:
            raise TrainingError(
                f"{path} takes images of shape {tuple(model.inputs[0].shape[1:])}, not one square "
                "size: pass --image-size N (the size it was trained at)."
            )
        data_config["image_size"] = int(image_size)
    else:
        data_config["image_size"] = int(image_size or height)
    return model, data_config


def evaluate(
    source: str | os.PathLike,
    *,
    dataset: str | None = None,
    data_dir: str | os.PathLike | None = None,
    batch_size: int | None = None,
    image_size: int | None = None,
    json_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Evaluates a training work directory or a `.keras` classifier.

    A work directory brings its own data config (dataset, image size,
    preprocessing) and its classes (classes.json): images are labelled by class
    name, and data with another class set raises `ClassesChanged`;
    `dataset`/`data_dir` override the data config. A `.keras` file needs
    `dataset`, and is fed images at its input size (or `image_size` for a model
    that takes any size) with the default ImageNet normalization. With
    `json_path`, the metrics are also written there, atomically (its folder is
    created and checked before evaluating); an existing file there is replaced only
    when it is a metrics file that `evaluate` wrote, and never the evaluated model
    or a file of a training run. Returns {"loss", "top1", "top5", "examples"};
    "top5" is None below `TOP5_MIN_CLASSES` classes (as in `train_and_evaluate`).
    """
    batch_size = _check_size("batch_size", batch_size, MAX_INT32)
    image_size = _check_size("image_size", image_size, MAX_IMAGE_SIZE)
    path = Path(source)
    target = _json_target(json_path, source) if json_path is not None else None
    run = path.is_dir()
    if run:
        run_config = run_dir.run_config(path)
        if run_config is None:
            raise TrainingError(f"{source} is not a training work directory (no config.yaml).")
        data_config = run_config["data"]
        model = run_dir.load_model(path)
        _check_image_model(model, source, image_size)
        batch_size = batch_size or run_config["train"]["batch_size"]
        if image_size is not None:
            data_config["image_size"] = int(image_size)
    elif path.is_file() and path.suffix == ".keras":
        model, data_config = _model_file_source(path, dataset, image_size)
    elif path.is_file() and run_dir.is_legacy_hdf5(path):
        raise TrainingError(run_dir.legacy_hdf5_message(path))
    else:
        raise TrainingError(
            f"{source} is neither a training work directory nor a .keras model file."
        )
    if dataset is not None:
        data_config["dataset"] = dataset
    if data_dir is not None:
        data_config["data_dir"] = data_dir
    data_config["cache"] = False
    # A run's images are labelled by its stored class names (another class set is refused).
    options = run_dir.data_options(path, data_config) if run else {}
    batch_size = batch_size or 128
    check_batch_memory(batch_size, data_config["image_size"], ("--batch-size", "--image-size"))
    data = load_data(data_config, batch_size, train=False, **options)
    model_classes = int(model.outputs[0].shape[-1])
    if model_classes != data.num_classes:
        raise TrainingError(
            f"The model predicts {model_classes} classes but {data_config['dataset']} has {data.num_classes}."
        )
    metrics = [keras.metrics.CategoricalAccuracy(name="top1"), *top5_metrics(data.num_classes)]
    model.compile(
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        metrics=metrics,
        jit_compile=False,
    )
    try:
        results = model.evaluate(data.eval, return_dict=True, verbose=0)
    except (tf.errors.ResourceExhaustedError, MemoryError) as error:
        raise TrainingError(
            f"Out of memory evaluating batches of {batch_size} images of "
            f"{data_config['image_size']}x{data_config['image_size']}: lower --batch-size. "
            f"Received: batch_size={batch_size}"
        ) from error
    metrics = {
        "loss": float(results["loss"]),
        "top1": float(results["top1"]),
        "top5": float(results["top5"]) if "top5" in results else None,
        "examples": data.eval_examples,
    }
    if target is not None:
        target = _json_target(json_path, source)  # nothing else appeared there meanwhile
        write_metrics(target, {METRICS_FIELD: METRICS_VERSION, **metrics})
    return metrics
