"""`train_and_evaluate(config, workdir)`: the library behind `bnkeras train`.

One call trains (or resumes) a run in `workdir` with Keras `model.fit` and
writes `config.yaml` (resolved), `classes.json` (the class names in label order),
`log.csv` (a row per epoch), `checkpoints/` (atomic, last and best), `tensorboard/`,
`model.keras` (final, without optimizer), `metrics.json` and `curves.png`. Calling it again with the same
config resumes after the last completed epoch (weights, optimizer state,
LR-schedule position, renorm step and epoch counter all come back); a larger
`train.epochs` continues a finished run, and the optimizer's hyper-parameters
(`OPTIMIZER_CHANGES`) may change on resume. The work directory's rules (which
files are the run's, the lock, where to resume from) live in `workdir.py`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import re
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from bnkeras import _compat
from bnkeras.errors import Error
from bnkeras.recalibrate import recalibrate_batchnorm
from bnkeras.training import checkpoints, manifest
from bnkeras.training import workdir as run_dir
from bnkeras.training.config import RESUMABLE_CHANGES, differences, dump
from bnkeras.training.curves import plot_curves
from bnkeras.training.data import load_data, read_errors
from bnkeras.training.files import atomic_save_model, atomic_write_text
from bnkeras.training.metrics import top5_metrics
from bnkeras.training.models import build_model
from bnkeras.training.names import CIFAR_DEPTHS
from bnkeras.training.progress import fit_progress
from bnkeras.training.schedules import make_schedule

logger = logging.getLogger(__name__)

LOG_FIELDS = ("epoch", "lr", "loss", "accuracy", "val_loss", "val_accuracy", "seconds")
# Keys of the optimizer and the loss that may change when a run resumes (recorded in
# checkpoints/state.json and config.yaml); they add or remove no variable of the
# checkpoint (SGD's momentum does, between 0 and non-zero, so it stays fixed).
OPTIMIZER_CHANGES = (
    "train.lr",
    "train.lr_scaling",
    "train.warmup_epochs",
    "train.schedule",
    "train.step_epochs",
    "train.weight_decay",
    "train.nesterov",
    "train.label_smoothing",
)


CIFAR_MODELS = tuple(f"resnet{depth}" for depth in CIFAR_DEPTHS)  # take model.width


class TrainingError(Error, RuntimeError):
    """A run that cannot start or had to stop; the message says why and what to do."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; the message says from which epoch a rerun resumes."""


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

    def __init__(self, workdir, checkpoint_root, config, state, write):
        super().__init__()
        self.workdir, self.checkpoint_root = workdir, checkpoint_root
        self.config, self.state, self.write = config, state, write
        self.nan_epoch = None
        self.events_before = set()  # the files in the run's folders before this process wrote
        self.epoch = None  # 0-based, the epoch in progress
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
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
        if self.write:
            run_dir.record_event_files(self.workdir, self.events_before)
        total = self.config["train"]["epochs"]
        logger.info(
            f"epoch {done}/{total}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.4f}, "
            f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.4f}, "
            f"lr {row['lr']:.4g}, {seconds:.1f} s"
        )


class _StopOnInterrupt(keras.callbacks.Callback):
    """Turns Ctrl-C during `fit` into `TrainingInterrupted` at the next batch boundary.

    SIGINT only sets a flag (a KeyboardInterrupt raised inside a running TensorFlow
    op can leave the runtime broken and crash the process at exit); the callback
    raises between batches, and `check()` after `fit` raises for a Ctrl-C that came
    after the last batch (during the last epoch's checkpoint, say). A second Ctrl-C
    interrupts at once.
    """

    def __init__(self, message):
        super().__init__()
        self.message = message  # callable: the text of the interruption
        self._signalled = False
        self._previous = None

    def _handler(self, signum, frame):
        self._signalled = True
        signal.signal(signal.SIGINT, self._previous)

    def on_train_begin(self, logs=None):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def on_train_end(self, logs=None):
        self.restore()

    def restore(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        self._previous = None

    def check(self, *_, **__):
        if self._signalled:
            self._signalled = False
            raise TrainingInterrupted(self.message())

    on_train_batch_end = on_test_batch_end = on_epoch_begin = check


def append_log(workdir, row):
    path = Path(workdir) / "log.csv"
    new = not path.exists() or not path.stat().st_size
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, LOG_FIELDS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        handle.flush()
        os.fsync(handle.fileno())


def read_log(workdir):
    """The rows of log.csv as floats; a `TrainingError` naming the line when it is damaged."""
    path = Path(workdir) / "log.csv"
    if not path.exists():
        return []
    rows = []
    with open(path, newline="", errors="replace") as handle:
        reader = csv.DictReader(handle)
        try:
            if reader.fieldnames is not None and list(reader.fieldnames) != list(LOG_FIELDS):
                raise ValueError(f"header {','.join(reader.fieldnames)}")
            for row in reader:
                if list(row) != list(LOG_FIELDS):
                    raise ValueError(f"columns {', '.join(map(str, row))}")
                rows.append({k: float(v) for k, v in row.items()})
        except (csv.Error, TypeError, ValueError) as error:
            raise TrainingError(
                f"{path} line {reader.line_num} is not a bnkeras log row ({error}): move the "
                "file away and rerun (the run's checkpoints are unaffected)."
            ) from None
    return rows


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


def nan_message(nan_epoch, state, workdir, batch=None):
    kept = state["epoch"] if state else None
    at = f" (batch {batch})" if batch is not None else ""
    where = (
        f"The last good checkpoint (epoch {kept}) is kept in {checkpoints.directory(workdir)}; "
        if kept
        else "No epoch had completed, so there is no checkpoint; "
    )
    return (
        f"The loss became NaN in epoch {nan_epoch}{at}: training stopped. {where}"
        "lower --lr (or raise train.warmup_epochs) and rerun to resume."
    )


def compile_model(model, config, steps_per_epoch, num_classes, head=None):
    """Compiles `model` for the run of `config`.

    With `train.backbone_lr_multiplier` < 1 the learning rate of every weight outside
    the head (the layers named in `head`; by default the model's last Dense layer) is
    multiplied by it, its decoupled weight decay included: a pretrained backbone moves
    (and decays) slower than a new head.
    """
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
    if train["backbone_lr_multiplier"] != 1.0:
        _slower_backbone(model, optimizer, train["backbone_lr_multiplier"], head)
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy")]
    metrics += top5_metrics(num_classes)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=train["label_smoothing"]
        ),
        metrics=metrics,
        # "auto" is Keras's rule: XLA on a GPU/TPU without a distribution strategy.
        jit_compile=train["jit_compile"],
    )
    return model


def _slower_backbone(model, optimizer, multiplier, head):
    if head is None:
        dense = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
        head = [dense[-1].name] if dense else []
    fast = {id(v) for name in head for v in model.get_layer(name).trainable_weights}
    _compat.scale_learning_rates(optimizer, lambda v: 1.0 if id(v) in fast else multiplier)


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


def default_mixed_precision() -> str:
    """The compute dtype of a bare `--mixed-precision`: float16 where a GPU is visible,
    bfloat16 without one (CPUs emulate float16, about 100x slower than float32; Keras
    recommends bfloat16 for CPUs and TPUs)."""
    return "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"


def _warn_float16_without_gpu(train_config):
    if train_config["mixed_precision"] == "float16" and default_mixed_precision() != "float16":
        warnings.warn(
            "train.mixed_precision=float16 on a machine without a GPU: CPUs emulate float16, "
            "about 100x slower than float32. Use bfloat16 (what a bare --mixed-precision "
            "picks here) or no mixed precision.",
            UserWarning,
            stacklevel=2,
        )


@contextlib.contextmanager
def _run_globals(train_config):
    """Seeds the run and sets its dtype policy; the previous dtype policy, the Python
    and NumPy random states and TensorFlow's global seed come back on exit (a library
    call leaves the process as it found it)."""
    policy = keras.config.dtype_policy()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_seed = tf.compat.v1.random.get_seed(None)[0]  # None when no global seed is set
    keras.utils.set_random_seed(int(train_config["seed"]))
    if train_config["mixed_precision"]:  # "float16" or "bfloat16"
        _warn_float16_without_gpu(train_config)
        keras.config.set_dtype_policy(f"mixed_{train_config['mixed_precision']}")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        tf.random.set_seed(tf_seed)


def _multiworker_workarounds(model, strategy, dataset):
    """Two Keras 3.15 bugs make fit() fail under MultiWorkerMirroredStrategy
    (tensorflow/tensorflow#72388); both are worked around here, for that strategy only:

    - fit() builds metrics and optimizer from a batch averaged over replicas
      (`strategy.reduce` of a PerReplica batch), which fails: build once from a
      local batch (of zeros) instead;
    - the step's scalar logs are reduced with `strategy.reduce("MEAN", v, axis=0)`,
      invalid for 0-d values: give every log value shape [1].
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    # A batch of zeros of the data's shapes: a partly read iterator of the (cached)
    # evaluation data left some workers fewer validation batches, now and then.
    images, labels = (tf.zeros([1, *spec.shape[1:]], spec.dtype) for spec in dataset.element_spec)
    with strategy.scope():
        _compat.build_from_batch(model, (images, labels))

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


@dataclasses.dataclass
class _Run:
    """What the three steps of a run (setup, fit, finalize) share."""

    config: dict
    workdir: Path
    strategy: object
    chief: bool
    state: dict = None  # the checkpoint state to resume from (None: a new run)
    changes: list = dataclasses.field(default_factory=list)  # optimizer keys changed on resume
    recovered: bool = False  # the state was rebuilt from another checkpoint than its last
    # load_data's classes and held-out rule of a resumed run (run_dir.data_options)
    data_options: dict = dataclasses.field(default_factory=dict)
    data: object = None
    train_ds: object = None  # the data's pipelines, sharded by batch across workers
    eval_ds: object = None
    model: object = None
    callback: EpochEnd = None

    @property
    def initial_epoch(self):
        return self.state["epoch"] if self.state else 0

    @property
    def saved_epochs(self):
        state = (self.callback and self.callback.state) or self.state
        return state["epoch"] if state else 0


def _plan(run, overwrite):
    """Decides whether the run resumes (and from which checkpoint) before anything is written."""
    if not run.chief:  # other workers resume from the chief's checkpoints
        run.state = checkpoints.read_state(run.workdir)
        if run.state is not None:
            run.data_options = run_dir.data_options(run.workdir, run.config["data"])
        return
    if overwrite or not run_dir.is_run(run.workdir):
        return
    old = run_dir.run_config(run.workdir)
    run.data_options = run_dir.data_options(run.workdir, run.config["data"])
    run.state, note = run_dir.resume_state(run.workdir, old)
    if note:
        run.recovered = True
        warnings.warn(note, UserWarning, stacklevel=2)
    rows = read_log(run.workdir)  # a damaged log.csv is reported before any work
    if run.state is None and not rows and not _checkpoint_files(run.workdir):
        # The run never completed an epoch (e.g. it ran out of memory): it holds nothing
        # a new config could contradict, and the new config replaces the old one.
        if old and differences(old, run.config):
            logger.info(
                f"{run.workdir} holds a run that never completed an epoch: starting it again "
                "with this config"
            )
        return
    changes = differences(old, run.config) if old else []
    refused = [c for c in changes if c[0] not in (*RESUMABLE_CHANGES, *OPTIMIZER_CHANGES)]
    if refused:
        listed = "; ".join(f"{key}: {before!r} -> {after!r}" for key, before, after in refused[:6])
        raise TrainingError(
            f"The work directory {run.workdir} holds a run with another config ({listed}). "
            "Use another --workdir, or --overwrite to delete that run and start again."
        )
    run.changes = [c for c in changes if c[0] in OPTIMIZER_CHANGES] if run.state else []


def _checkpoint_files(workdir):
    return list(checkpoints.directory(workdir).glob("epoch_*.keras"))


def _finished_metrics(run, overwrite):
    """metrics.json of a finished run that has nothing left to train, else None."""
    if overwrite or not run.state or run.initial_epoch < run.config["train"]["epochs"]:
        return None
    if run_dir.damage(run.workdir / run_dir.MODEL) is not None:
        return None
    return run_dir.read_metrics(run.workdir)


def _load_checkpoint(model, path):
    """Loads the checkpoint; one that does not fit the model (Keras's ValueError naming
    the mismatched objects: a file of another run put there) is a `TrainingError`.
    The config was compared with the run's in `_plan`; anything else is a bug."""
    try:
        model.load_weights(path)
    except ValueError as error:
        if not re.match(r"A total of \d+ objects could not be loaded", str(error)):
            raise
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise TrainingError(
            f"The checkpoint {path} does not fit the model of this config ({first}): it was "
            "written by a run with another model or norm; use another --workdir, or "
            "--overwrite to start again."
        ) from error


def _setup(run):
    """Data, model and optimizer (restored from the checkpoint when resuming)."""
    config, epochs = run.config, run.config["train"]["epochs"]
    run.data = load_data(
        config["data"],
        config["train"]["batch_size"],
        (run.initial_epoch, max(epochs, run.initial_epoch + 1)),
        **run.data_options,
    )
    # Workers shard the batches (the default, by file, starves a worker of a one-file split).
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    run.train_ds = run.data.train.with_options(options)
    run.eval_ds = run.data.eval.with_options(options)
    size = config["data"]["image_size"]
    logger.info(
        f"data: {run.data.description}; model: {config['model']['name']} with norm "
        f"{config['norm']['name']}; {run.strategy.num_replicas_in_sync} replica(s)"
    )
    with run.strategy.scope():
        run.model = build_model(
            config["model"],
            config["norm"],
            run.data.num_classes,
            (size, size, 3),
            total_steps=epochs * run.data.steps_per_epoch,
        )
        compile_model(run.model, config, run.data.steps_per_epoch, run.data.num_classes)
        # Built before the first trace (as Keras does under a strategy): else the
        # train step creates its slots while tracing and is traced a second time.
        run.model.optimizer.build(run.model.trainable_variables)
        if run.state is not None:
            _load_checkpoint(run.model, checkpoints.last_path(run.workdir, run.state))
    _multiworker_workarounds(run.model, run.strategy, run.data.eval)


def _start(run, overwrite):
    """Everything set up: now the run's files are written (a refused run leaves none)."""
    checkpoint_root = run.workdir
    if not run.chief:
        # All workers take part in saving under tf.distribute; the others save to scratch.
        checkpoint_root = run.workdir / f".worker-{run.strategy.cluster_resolver.task_id}"
    run.callback = EpochEnd(run.workdir, checkpoint_root, run.config, run.state, run.chief)
    if not run.chief:
        return
    if overwrite and run_dir.is_run(run.workdir):
        kept = run_dir.clear(run.workdir)
        logger.info(f"--overwrite: deleted the previous run's files in {run.workdir}")
        if kept:
            listed = ", ".join(kept[:5]) + (f" and {len(kept) - 5} more" if len(kept) > 5 else "")
            logger.info(
                f"--overwrite: kept {len(kept)} file(s) that the run did not write: {listed}"
            )
    elif run.state is not None and manifest.written(run.workdir) is None:
        # A run from before the list of written files: list what it wrote, by its names.
        manifest.record(run.workdir, *run_dir.legacy_files(run.workdir))
    run_dir.remove_temporary(run.workdir)
    run.callback.events_before = set(run_dir.folder_files(run.workdir))
    header = ""
    if run.state is not None:
        if run.changes:
            record = {"epoch": run.initial_epoch, "changes": {k: [a, b] for k, a, b in run.changes}}
            run.state["resumed"] = [*run.state.get("resumed", []), record]
            listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in run.changes)
            logger.info(
                f"resuming from epoch {run.initial_epoch} with changed optimizer settings: {listed}"
            )
        if run.changes or run.recovered:
            checkpoints.write_state(run.workdir, run.state)
        header = "".join(
            f"# resumed at epoch {r['epoch']} with "
            + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in r["changes"].items())
            + "\n"
            for r in run.state.get("resumed", [])
        )
    atomic_write_text(run.workdir / run_dir.CONFIG, header + dump(run.config))
    run_dir.write_classes(run.workdir, run.data)
    _truncate_log(run.workdir, run.initial_epoch)
    if run.initial_epoch:
        logger.info(f"resuming from epoch {run.initial_epoch} (checkpoint {run.state['last']})")


def _fit(run, progress):
    epochs, model = run.config["train"]["epochs"], run.model
    if run.initial_epoch >= epochs:
        logger.info(
            f"the run already has {run.initial_epoch} epochs (asked for {epochs}): nothing to train"
        )
        if run.config["train"]["ema"] > 0:  # the checkpoint holds the raw weights and their EMA
            model.optimizer.finalize_variable_values(model.trainable_variables)
        return
    interrupt = _StopOnInterrupt(lambda: _interrupted(run))
    callbacks = [interrupt, run.callback, keras.callbacks.TerminateOnNaN(raise_error=True)]
    if run.config["train"]["ema"] > 0:  # validation (and so the best checkpoint) uses the EMA
        callbacks.append(keras.callbacks.SwapEMAWeights())
    if run.chief:
        tensorboard = str(run.workdir / "tensorboard")
        callbacks.append(
            keras.callbacks.TensorBoard(tensorboard, write_graph=False, profile_batch=0)
        )
    verbose, progress_callbacks = fit_progress(progress, run.config["train"]["batch_size"])
    callbacks += progress_callbacks
    try:
        with read_errors(run.data):
            model.fit(
                run.train_ds,
                validation_data=run.eval_ds,
                epochs=epochs,
                initial_epoch=run.initial_epoch,
                steps_per_epoch=run.data.steps_per_epoch,
                callbacks=callbacks,
                shuffle=False,  # the training pipeline shuffles
                verbose=verbose,
            )
    except RuntimeError as error:  # TerminateOnNaN stops within the batch
        batch = re.search(r"NaN or Inf loss encountered at batch (\d+)", str(error))
        if batch is None:
            raise
        epoch = run.callback.epoch + 1
        raise TrainingError(
            nan_message(epoch, run.callback.state, run.workdir, int(batch.group(1)))
        ) from None
    finally:
        interrupt.restore()
        if run.chief:
            run_dir.record_event_files(run.workdir, run.callback.events_before)
    interrupt.check()  # a Ctrl-C after the last batch: before, lost (reproduce went on)
    if run.callback.nan_epoch is not None:  # a NaN that only the epoch's metrics show
        raise TrainingError(nan_message(run.callback.nan_epoch, run.callback.state, run.workdir))


def _finalize(run, started):
    """Precise BN, the final evaluation, model.keras and metrics.json."""
    config, model, workdir = run.config, run.model, run.workdir
    precise = config["train"]["precise_bn_batches"]
    if precise:
        # The batches of the epochs after the last one (the same data order as training).
        batches = run.data.train_batches(precise, first_epoch=config["train"]["epochs"])
        with read_errors(run.data):
            used = recalibrate_batchnorm(model, batches, precise)
        logger.info(
            f"precise BN: moving statistics recomputed as averages over {used} training batches"
        )
    with read_errors(run.data):
        results = model.evaluate(run.eval_ds, return_dict=True, verbose=0)
    state = run.callback.state or run.state
    metrics = {
        "loss": float(results["loss"]),
        "top1": float(results["accuracy"]),
        "top5": float(results["top5"]) if "top5" in results else None,
        "epochs_completed": int(state["epoch"]) if state else 0,
        "best_val_accuracy": state.get("best_value") if state else None,
        "best_epoch": state.get("best_epoch") if state else None,
        "precise_bn_batches": precise,
        "train_examples": run.data.train_examples,
        "eval_examples": run.data.eval_examples,
        "seconds": round(time.perf_counter() - started, 1),
    }
    if run.chief:
        atomic_save_model(_final_model(model), workdir / run_dir.MODEL)
        atomic_write_text(workdir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
        plot_curves(workdir, read_log(workdir), metrics["top1"], metrics["best_epoch"])
    else:
        run_dir.clear(run.callback.checkpoint_root)
        with contextlib.suppress(OSError):
            run.callback.checkpoint_root.rmdir()
    _log_final(metrics, workdir)
    return metrics


def _log_final(metrics, workdir):
    logger.info(
        f"final: loss {metrics['loss']:.4f}, top-1 {metrics['top1']:.4f}"
        + (f", top-5 {metrics['top5']:.4f}" if metrics["top5"] is not None else "")
        + f" after {metrics['epochs_completed']} epochs; run in {workdir}"
    )


def _memory_keys(config):
    """The config keys that size the memory a run needs, with their values."""
    keys = [("data.image_size", config["data"]["image_size"])]
    keys.append(("train.batch_size", config["train"]["batch_size"]))
    model = config["model"]
    if model["name"] == "mobilenet_v2":
        keys.append(("model.alpha", model["alpha"]))
    elif model["name"] in CIFAR_MODELS:
        keys.append(("model.width", model["width"]))
    return ", ".join(f"{key}={value}" for key, value in keys)


def out_of_memory_message(config, run=None):
    done = run.saved_epochs if run is not None else 0
    keys = _memory_keys(config)
    if not done:  # `_plan` lets a run that never completed an epoch take a new config
        return (
            f"Out of memory with this config: lower {keys} (e.g. --set data.image_size=... "
            "or --batch-size ...) and rerun the command; no --overwrite is needed."
        )
    return (
        f"Out of memory after {done} completed epoch(s) with this config ({keys}): the "
        f"run's checkpoint of epoch {done} is kept. Its model and data keys cannot change on "
        "resume: free memory and rerun the same command to resume, or lower those keys in "
        "another --workdir."
    )


def check_batch_memory(batch_size, image_size, names, available=None):
    """A `TrainingError` naming the options `names` (of the batch size and the image
    size) when one batch of float32 images alone (batch x size x size x 3 x 4 bytes)
    exceeds the machine's memory."""
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # not POSIX: no estimate
            return
    needed = batch_size * image_size * image_size * 3 * 4
    if needed > available:
        raise TrainingError(
            f"One batch of {batch_size} images of {image_size}x{image_size} needs "
            f"{needed / 2**30:.1f} GiB, more than this machine's {available / 2**30:.1f} GiB of "
            f"memory: lower {names[1]} or {names[0]}. Received: {names[1]}={image_size}, "
            f"{names[0]}={batch_size}"
        )


def _io_failure(error, run):
    where = error.filename or run.workdir
    done = run.saved_epochs
    resume = (
        f"rerun the same command to resume from epoch {done + 1} (the checkpoints are intact)"
        if done
        else "rerun the same command"
    )
    return f"Cannot write {where}: {error.strerror or error}. Free space or fix the folder, then {resume}."


def _interrupted(run):
    done = run.saved_epochs
    if done:
        return f"interrupted; rerun the same command to resume from epoch {done + 1}"
    return "interrupted before an epoch was saved; rerun the same command to start again"


def train_and_evaluate(
    config: dict[str, Any],
    workdir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: int | None = None,
) -> dict[str, Any]:
    """Trains or resumes the run of `config` in `workdir`; returns the final metrics.

    Raises TrainingError (with a message naming the problem and the fix) for bad
    input, a NaN loss or a failed write (disk full, read-only); the config, data,
    model and work-directory errors of the other modules are ValueErrors with the
    same kind of message. Ctrl-C raises `TrainingInterrupted` (a KeyboardInterrupt)
    whose message says from which epoch a rerun resumes. The work directory is
    locked for the call; a second call on it fails at once, naming the holder's PID.

    Progress (data, resume, a line per epoch, the final metrics) is logged at INFO
    level through `logging.getLogger(__name__)`; resuming from another checkpoint
    than the last one (it was damaged) is a `UserWarning`. `progress` chooses the
    progress inside an epoch (`bnkeras.training.progress.fit_progress`).
    """
    started = time.perf_counter()
    strategy = make_strategy(config["train"]["strategy"])
    run = _Run(config, Path(workdir), strategy, _is_chief(strategy))
    _check_batch(config, strategy.num_replicas_in_sync)
    run_dir.check_outside_data(run.workdir, config["data"])
    check_batch_memory(
        config["train"]["batch_size"],
        config["data"]["image_size"],
        ("train.batch_size", "data.image_size"),
    )
    with contextlib.ExitStack() as stack:
        if run.chief:
            run_dir.check_owned(run.workdir)
            stack.enter_context(run_dir.lock(run.workdir))
        _plan(run, overwrite)
        finished = _finished_metrics(run, overwrite)
        if finished is not None:
            if run.chief:
                _truncate_log(run.workdir, run.initial_epoch)  # rows of a killed longer rerun
            logger.info(
                f"the run already has {run.initial_epoch} epochs (asked for "
                f"{config['train']['epochs']}): nothing to train; its model and metrics are kept"
            )
            _log_final(finished, run.workdir)
            return finished
        try:
            with _run_globals(config["train"]):
                _setup(run)
                _start(run, overwrite)
                _fit(run, progress)
                return _finalize(run, started)
        except KeyboardInterrupt:
            raise TrainingInterrupted(_interrupted(run)) from None
        except (tf.errors.ResourceExhaustedError, MemoryError) as error:
            raise TrainingError(out_of_memory_message(config, run)) from error
        except OSError as error:
            raise TrainingError(_io_failure(error, run)) from None


__all__ = ["OPTIMIZER_CHANGES", "TrainingError", "TrainingInterrupted", "train_and_evaluate"]
