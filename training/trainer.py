"""`train_and_evaluate(config, workdir)`: the library behind `bnkeras train`.

One call trains (or resumes) a run in `workdir` with Keras `model.fit` and
writes, as the design fixes them: `config.yaml` (resolved), `log.csv` (a row per
epoch), `checkpoints/` (atomic, last and best), `tensorboard/`, `model.keras`
(final, without optimizer), `metrics.json` and `curves.png`. Calling it again
with the same config resumes after the last completed epoch (weights, optimizer
state, LR-schedule position, renorm step and epoch counter all come back); a
larger `train.epochs` continues a finished run.
"""

import contextlib
import csv
import io
import json
import math
import os
import shutil
import time
from pathlib import Path

import keras
import tensorflow as tf

from bnkeras.recalibrate import recalibrate_batchnorm
from bnkeras.training import checkpoints
from bnkeras.training.config import RESUMABLE_CHANGES, differences, dump, load_run_config
from bnkeras.training.curves import plot_curves
from bnkeras.training.data import load_data
from bnkeras.training.files import atomic_save_model, atomic_write_text
from bnkeras.training.metrics import top5_metrics
from bnkeras.training.models import build_model
from bnkeras.training.progress import fit_progress
from bnkeras.training.schedules import make_schedule

RUN_FILES = ("config.yaml", "log.csv", "metrics.json", "model.keras", "curves.png")
RUN_DIRS = ("checkpoints", "tensorboard")
LOG_FIELDS = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")


class TrainingError(RuntimeError):
    """A run that cannot start or had to stop; the message says why and what to do."""


# ------------------------------------------------------------------ work directory


def _check_writable(workdir):
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / f".write-test-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise TrainingError(
            f"Cannot write to the work directory {workdir}: {error.strerror or error}."
        ) from None


def _prepare_workdir(workdir, config, overwrite, log):
    if workdir.exists() and not workdir.is_dir():
        raise TrainingError(f"The work directory {workdir} is a file: choose a directory path.")
    _check_writable(workdir)
    existing = workdir / "config.yaml"
    if existing.is_file():
        changes = [
            c
            for c in differences(load_run_config(workdir), config)
            if c[0] not in RESUMABLE_CHANGES
        ]
        if changes and not overwrite:
            listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, old, new in changes[:6])
            raise TrainingError(
                f"The work directory {workdir} holds a run with another config ({listed}). "
                "Use another --workdir, or --overwrite to delete that run and start again."
            )
        if overwrite:
            log(f"--overwrite: deleting the previous run in {workdir}")
            for name in RUN_FILES:
                (workdir / name).unlink(missing_ok=True)
            for name in RUN_DIRS:
                shutil.rmtree(workdir / name, ignore_errors=True)
    atomic_write_text(workdir / "config.yaml", dump(config))


# ------------------------------------------------------------------------ strategy


def make_strategy(name):
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if "TF_CONFIG" not in os.environ:
            raise TrainingError(
                "--strategy multiworker needs TF_CONFIG (the cluster and this worker's task), e.g. "
                '{"cluster": {"worker": ["host1:port", "host2:port"]}, "task": {"type": "worker", "index": 0}}.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TrainingError(f"Unknown strategy {name!r}: valid are default, mirrored, multiworker.")


def _is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    cluster = resolver.cluster_spec().as_dict()
    if "chief" in cluster:
        return resolver.task_type == "chief"
    return resolver.task_type == "worker" and resolver.task_id == 0


# ----------------------------------------------------------------------- callbacks


def _current_lr(optimizer):
    lr = optimizer.learning_rate
    return float(lr.numpy() if hasattr(lr, "numpy") else lr)


class EpochEnd(keras.callbacks.Callback):
    """Per epoch: the log.csv row, a one-line summary, the NaN check and the checkpoint."""

    def __init__(self, workdir, checkpoint_root, config, state, log, write):
        super().__init__()
        self.workdir, self.checkpoint_root = workdir, checkpoint_root
        self.config, self.state, self.log, self.write = config, state, log, write
        self.nan_epoch = None
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        seconds = time.perf_counter() - self._start
        done = epoch + 1
        if not all(math.isfinite(float(v)) for k, v in logs.items() if "loss" in k):
            self.nan_epoch = done
            self.model.stop_training = True
            return
        row = {
            "epoch": done,
            "lr": _current_lr(self.model.optimizer),
            "loss": logs.get("loss"),
            "accuracy": logs.get("accuracy"),
            "val_loss": logs.get("val_loss"),
            "val_accuracy": logs.get("val_accuracy"),
            "seconds": round(seconds, 2),
        }
        if self.write:
            append_log(self.workdir, row)
        self.state = checkpoints.save(
            self.model,
            self.checkpoint_root,
            done,
            logs.get("val_accuracy"),
            self.config,
            self.state,
        )
        total = self.config["train"]["epochs"]
        self.log(
            f"epoch {done}/{total}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.4f}, "
            f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f}, "
            f"lr {row['lr']:.4g}, {seconds:.1f} s"
        )


def append_log(workdir, row):
    path = Path(workdir) / "log.csv"
    new = not path.exists()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def read_log(workdir):
    path = Path(workdir) / "log.csv"
    if not path.exists():
        return []
    with open(path, newline="") as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _truncate_log(workdir, epochs):
    """Drops rows of epochs after the last checkpoint (a run killed in between)."""
    rows = read_log(workdir)
    kept = [r for r in rows if r["epoch"] <= epochs]
    if len(kept) == len(rows):
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, LOG_FIELDS)
    writer.writeheader()
    writer.writerows({k: (int(v) if k == "epoch" else v) for k, v in row.items()} for row in kept)
    atomic_write_text(Path(workdir) / "log.csv", text.getvalue())


# ------------------------------------------------------------------------- model


def nan_message(nan_epoch, state, workdir):
    kept = state["epoch"] if state else None
    where = (
        f"The last good checkpoint (epoch {kept}) is kept in {checkpoints.directory(workdir)}; "
        if kept
        else "No epoch had completed, so there is no checkpoint; "
    )
    return (
        f"The loss became NaN in epoch {nan_epoch}: training stopped. {where}"
        "lower --lr (or raise train.warmup_epochs) and rerun to resume."
    )


def compile_model(model, config, steps_per_epoch, num_classes):
    train = config["train"]
    peak = train["lr"] * (train["batch_size"] / 256 if train["lr_scaling"] == "linear" else 1.0)
    schedule = make_schedule(train, steps_per_epoch, peak)
    ema = {"use_ema": True, "ema_momentum": train["ema"]} if train["ema"] > 0 else {}
    if train["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(
            schedule,
            momentum=train["momentum"],
            nesterov=train["nesterov"],
            weight_decay=train["weight_decay"] or None,
            **ema,
        )
    else:
        optimizer = keras.optimizers.AdamW(schedule, weight_decay=train["weight_decay"], **ema)
    # Weight decay (decoupled, as Keras applies it) spares BN gamma/beta and biases.
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    metrics += top5_metrics(num_classes)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=train["label_smoothing"]
        ),
        metrics=metrics,
        jit_compile=False,
    )
    return model


def _check_batch(config, replicas):
    batch = config["train"]["batch_size"]
    if batch % replicas:
        raise TrainingError(
            f"train.batch_size {batch} is not divisible by the {replicas} replicas of the strategy: "
            f"use a multiple of {replicas}."
        )
    norm = config["norm"]
    per_replica = batch // replicas
    if norm["name"] == "ghost" and per_replica % norm["virtual_batch_size"]:
        raise TrainingError(
            f"The per-replica batch size {per_replica} (train.batch_size {batch} / {replicas} replicas) "
            f"is not divisible by the ghost virtual batch size norm.virtual_batch_size="
            f"{norm['virtual_batch_size']}: change one of them."
        )


@contextlib.contextmanager
def _dtype_policy(mixed):
    previous = keras.config.dtype_policy()
    if mixed:
        keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _multiworker_workarounds(model, strategy, dataset):
    """Two Keras 3.15 bugs make fit() fail under MultiWorkerMirroredStrategy
    (tensorflow/tensorflow#72388); both are worked around here, for that strategy only:

    - fit() builds metrics and optimizer from a batch averaged over replicas
      (`strategy.reduce` of a PerReplica batch), which fails: build once from a
      local batch instead;
    - the step's scalar logs are reduced with `strategy.reduce("MEAN", v, axis=0)`,
      invalid for 0-d values: give every log value shape [1].
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    images, labels = next(iter(dataset))
    with strategy.scope():
        model._symbolic_build(data_batch=(images, labels))
    model._maybe_symbolic_build = lambda *args, **kwargs: None

    def with_vector_logs(step):
        def wrapped(data):
            return {name: tf.reshape(value, [1]) for name, value in step(data).items()}

        return wrapped

    model.train_step = with_vector_logs(model.train_step)
    model.test_step = with_vector_logs(model.test_step)


def _final_model(model):
    """An uncompiled copy (no optimizer state) for model.keras."""
    copy = keras.Model.from_config(model.get_config())  # clone_model would recompile
    copy.set_weights(model.get_weights())
    return copy


# --------------------------------------------------------------------------- run


def train_and_evaluate(config, workdir, *, overwrite=False, log=print, progress=None):
    """Trains or resumes the run of `config` in `workdir`; returns the final metrics.

    Raises TrainingError (with a message naming the problem and the fix) for bad
    input or a NaN loss; the config, data and model errors of the other modules
    are ValueErrors with the same kind of message.
    """
    workdir = Path(workdir)
    started = time.perf_counter()
    keras.utils.set_random_seed(int(config["train"]["seed"]))
    strategy = make_strategy(config["train"]["strategy"])
    chief = _is_chief(strategy)
    # Every worker resumes from the chief's checkpoints; the others save theirs
    # (all workers take part in saving under tf.distribute) to a scratch directory.
    checkpoint_root = workdir if chief else workdir / f".worker-{strategy.cluster_resolver.task_id}"
    if chief:
        _prepare_workdir(workdir, config, overwrite, log)
    replicas = strategy.num_replicas_in_sync
    _check_batch(config, replicas)
    state = checkpoints.read_state(workdir)
    epochs = config["train"]["epochs"]
    with _dtype_policy(config["train"]["mixed_precision"]):
        initial_epoch = state["epoch"] if state else 0
        data = load_data(
            config["data"],
            config["train"]["batch_size"],
            log,
            (initial_epoch, max(epochs, initial_epoch + 1)),
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        train_ds, eval_ds = data.train.with_options(options), data.eval.with_options(options)
        steps = data.steps_per_epoch
        size = config["data"]["image_size"]
        log(
            f"data: {data.description}; model: {config['model']['name']} with norm "
            f"{config['norm']['name']}; {replicas} replica(s)"
        )
        with strategy.scope():
            model = build_model(config["model"], config["norm"], data.num_classes, (size, size, 3))
            compile_model(model, config, steps, data.num_classes)
            if state is not None:
                model.optimizer.build(model.trainable_variables)
                model.load_weights(checkpoints.last_path(workdir, state))
        _multiworker_workarounds(model, strategy, data.eval)
        if chief:
            _truncate_log(workdir, initial_epoch)
        if initial_epoch:
            log(f"resuming from epoch {initial_epoch} (checkpoint {state['last']})")
        callback = EpochEnd(workdir, checkpoint_root, config, state, log, chief)
        if initial_epoch < epochs:
            callbacks = [callback]
            if chief:
                callbacks.append(
                    keras.callbacks.TensorBoard(
                        str(workdir / "tensorboard"), write_graph=False, profile_batch=0
                    )
                )
            verbose, progress_callbacks = fit_progress(progress, config["train"]["batch_size"])
            callbacks += progress_callbacks
            model.fit(
                train_ds,
                validation_data=eval_ds,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                shuffle=False,  # the training pipeline shuffles
                verbose=verbose,
            )
        else:
            log(
                f"the run already has {initial_epoch} epochs (asked for {epochs}): nothing to train"
            )
        if callback.nan_epoch is not None:
            raise TrainingError(nan_message(callback.nan_epoch, callback.state, workdir))
        precise = config["train"]["precise_bn_batches"]
        if precise:
            used = recalibrate_batchnorm(model, train_ds, precise)
            log(
                f"precise BN: moving statistics recomputed as averages over {used} training batches"
            )
        results = model.evaluate(eval_ds, return_dict=True, verbose=0)
    final_state = callback.state or state
    metrics = {
        "loss": float(results["loss"]),
        "top1": float(results["accuracy"]),
        "top5": float(results["top5"]) if "top5" in results else None,
        "epochs_completed": int(final_state["epoch"]) if final_state else 0,
        "best_val_accuracy": final_state.get("best_value") if final_state else None,
        "best_epoch": final_state.get("best_epoch") if final_state else None,
        "precise_bn_batches": precise,
        "train_examples": data.train_examples,
        "eval_examples": data.eval_examples,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if chief:
        atomic_save_model(_final_model(model), workdir / "model.keras")
        atomic_write_text(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        plot_curves(workdir, read_log(workdir), metrics["top1"], metrics["best_epoch"])
    else:
        shutil.rmtree(checkpoint_root, ignore_errors=True)
    log(
        f"final: loss {metrics['loss']:.4f}, top-1 {metrics['top1']:.4f}"
        + (f", top-5 {metrics['top5']:.4f}" if metrics["top5"] is not None else "")
        + f" after {metrics['epochs_completed']} epochs; run in {workdir}"
    )
    return metrics


def load_workdir_model(workdir):
    """The final model of a run, else its last checkpoint (for evaluate/export)."""
    workdir = Path(workdir)
    if (workdir / "model.keras").is_file():
        return keras.saving.load_model(workdir / "model.keras", compile=False)
    state = checkpoints.read_state(workdir)
    if state is None:
        raise TrainingError(f"{workdir} holds neither model.keras nor a checkpoint: train first.")
    return keras.saving.load_model(checkpoints.last_path(workdir, state), compile=False)


__all__ = ["TrainingError", "load_workdir_model", "train_and_evaluate"]
