"""`evaluate(source)`: loss, top-1 and top-5 of a trained model on an evaluation split."""

import copy
from pathlib import Path

import keras

from bnkeras.training.config import DEFAULTS, load_run_config
from bnkeras.training.data import load_data
from bnkeras.training.metrics import top5_metrics
from bnkeras.training.trainer import TrainingError, load_workdir_model


def evaluate(source, *, dataset=None, data_dir=None, batch_size=None, log=print):
    """Evaluates a training work directory or a `.keras` classifier.

    A work directory brings its own data config (dataset, image size,
    preprocessing); `dataset`/`data_dir` override it. A `.keras` file needs
    `dataset`, and is fed images at its input size with the default ImageNet
    normalization. Returns {"loss", "top1", "top5", "examples"}; "top5" is None
    below `TOP5_MIN_CLASSES` classes (as in `train_and_evaluate`).
    """
    path = Path(source)
    if path.is_dir():
        run_config = load_run_config(path)
        data_config = run_config["data"]
        model = load_workdir_model(path)
        batch_size = batch_size or run_config["train"]["batch_size"]
    elif path.is_file() and path.suffix == ".keras":
        if dataset is None:
            raise TrainingError(
                f"Evaluating the model file {source} needs --dataset (and --data-dir if not embedded)."
            )
        data_config = copy.deepcopy(DEFAULTS["data"])
        model = keras.saving.load_model(path, compile=False)
        data_config["image_size"] = int(model.inputs[0].shape[1])
    else:
        raise TrainingError(
            f"{source} is neither a training work directory nor a .keras model file."
        )
    if dataset is not None:
        data_config["dataset"] = dataset
    if data_dir is not None:
        data_config["data_dir"] = data_dir
    data_config["cache"] = False
    data = load_data(data_config, batch_size or 128, log)
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
    results = model.evaluate(data.eval, return_dict=True, verbose=0)
    return {
        "loss": float(results["loss"]),
        "top1": float(results["top1"]),
        "top5": float(results["top5"]) if "top5" in results else None,
        "examples": data.eval_examples,
    }
