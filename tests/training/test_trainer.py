import json
import logging
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
import yaml

from bnkeras.cli import main
from bnkeras.training.trainer import TrainingError, read_log, train_and_evaluate
from bnkeras.training.workdir import WorkdirError
from tests import _faults as faults
from tests.conftest import cli
from tests.reliability.conftest import assert_stale_lock_does_not_block
from tests.training.conftest import TINY

QUIET = {"progress": 0}


def test_one_epoch_writes_the_work_directory(one_epoch_run):
    workdir, metrics = one_epoch_run
    for name in (
        "config.yaml",
        "log.csv",
        "metrics.json",
        "model.keras",
        "curves.png",
        "checkpoints/state.json",
    ):
        assert (workdir / name).is_file(), name
    assert list((workdir / "tensorboard").rglob("events.out.tfevents*"))
    rows = read_log(workdir)
    assert [r["epoch"] for r in rows] == [1.0]
    assert set(rows[0]) == {
        "epoch",
        "lr",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "seconds",
    }
    saved = json.loads((workdir / "metrics.json").read_text())
    assert (
        saved["epochs_completed"] == 1 and 0.0 <= saved["top1"] <= 1.0 and saved["top5"] is not None
    )
    assert saved == metrics
    model = keras.saving.load_model(workdir / "model.keras")
    assert model.output.shape == (None, 10) and getattr(model, "optimizer", None) is None
    resolved = yaml.safe_load((workdir / "config.yaml").read_text())
    assert resolved["model"]["name"] == "resnet8" and resolved["train"]["epochs"] == 1


def _train_process(config_path, workdir, pause_at=None, flag=None):
    """`bnkeras train` as a real process; with `pause_at`, paused there for good (after
    writing the file `flag`: tests/_faults.py)."""
    env = faults.environment(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    argv = ["train", "--config", str(config_path), "--workdir", str(workdir)]
    if pause_at:  # longer than anything in the test takes: killed there
        argv = faults.command(pause_at, flag, *argv, seconds=900)
    else:
        argv = [sys.executable, "-m", "bnkeras", *argv]
    return subprocess.Popen(
        argv,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _weights(workdir):
    return keras.saving.load_model(Path(workdir) / "model.keras").get_weights()


@pytest.mark.slow
def test_resume_after_kill_matches_an_uninterrupted_run(tiny_config, tmp_path):
    config = tiny_config("train.epochs=3")  # 8 steps an epoch
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    paused = tmp_path / "paused"
    interrupted = _train_process(config_path, tmp_path / "interrupted", "epoch 2 step 4", paused)
    try:
        train_and_evaluate(config, tmp_path / "straight", **QUIET)  # meanwhile, in this process
        deadline = time.monotonic() + 300
        while not paused.exists():
            assert interrupted.poll() is None and time.monotonic() < deadline, (
                interrupted.stderr.read().decode()
            )
            time.sleep(0.05)
    finally:
        interrupted.send_signal(signal.SIGKILL)  # in the middle of epoch 2 (or on a failure)
        interrupted.wait()
    state = tmp_path / "interrupted" / "checkpoints" / "state.json"
    assert json.loads(state.read_text())["epoch"] == 1
    assert not (tmp_path / "interrupted" / "model.keras").exists()
    assert_stale_lock_does_not_block(tmp_path / "interrupted", interrupted.pid)
    resumed = _train_process(config_path, tmp_path / "interrupted")
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    for a, b in zip(
        _weights(tmp_path / "straight"), _weights(tmp_path / "interrupted"), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
    assert [r["epoch"] for r in read_log(tmp_path / "interrupted")] == [1.0, 2.0, 3.0]
    metrics = json.loads((tmp_path / "interrupted" / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 3


def test_rerun_resumes_and_larger_epochs_continue(tiny_config, one_epoch_copy, caplog):
    workdir = one_epoch_copy
    with caplog.at_level(logging.INFO, logger="bnkeras"):
        train_and_evaluate(tiny_config(), workdir, **QUIET)
    assert any(
        name == "bnkeras.training.trainer" and level == logging.INFO and "nothing to train" in m
        for name, level, m in caplog.record_tuples
    )
    metrics = train_and_evaluate(tiny_config(flat_epochs := "train.epochs=2"), workdir, **QUIET)
    assert flat_epochs and metrics["epochs_completed"] == 2
    assert [r["epoch"] for r in read_log(workdir)] == [1.0, 2.0]


@pytest.mark.parametrize("norm", ["ghost", "keras", "none"])  # renorm: tests/training/test_norms.py
def test_every_norm_trains(tiny_config, tmp_path, norm):
    metrics = train_and_evaluate(
        tiny_config(f"norm.name={norm}", "norm.virtual_batch_size=8"), tmp_path / norm, **QUIET
    )
    assert np.isfinite(metrics["loss"])


def test_precise_bn_and_ema_and_mixed_precision(tiny_config, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bnkeras")
    config = tiny_config(
        "train.precise_bn_batches=3", "train.ema=0.9", "train.mixed_precision=true"
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train_and_evaluate(config, tmp_path / "run", **QUIET)
    slow = [w for w in caught if "float16 on a machine without a GPU" in str(w.message)]
    assert len(slow) == (0 if tf.config.list_physical_devices("GPU") else 1)
    assert any("precise BN" in m and "3 training batches" in m for m in caplog.messages)
    assert metrics["precise_bn_batches"] == 3 and np.isfinite(metrics["loss"])
    assert keras.config.dtype_policy().name == "float32"  # restored after the run


@pytest.mark.parametrize("norm", ["renorm", "ghost"])
def test_xla_and_bfloat16(tiny_config, tmp_path, norm):
    # jit_compile=True is what Keras's "auto" picks on a GPU; bfloat16 needs no loss scaling.
    # Renorm (its warm-up laid over the run) and ghost BN (whole ghost batches in training,
    # a remainder in evaluation) take BN's paths and more; every layer's XLA paths are
    # checked against the graph in tests/harness.py.
    config = tiny_config(
        f"norm.name={norm}",
        "norm.virtual_batch_size=8",
        "train.jit_compile=true",
        "train.mixed_precision=bfloat16",
    )
    metrics = train_and_evaluate(config, tmp_path / "run", **QUIET)
    assert np.isfinite(metrics["loss"])
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    norms = [layer for layer in model.layers if "bn" in layer.name and hasattr(layer, "gamma")]
    assert norms and {layer.dtype_policy.name for layer in norms} == {"mixed_bfloat16"}
    assert keras.config.dtype_policy().name == "float32"


def test_nan_loss_stops_and_says_so(tiny_config, tmp_path):
    with pytest.raises(TrainingError, match=r"NaN in epoch 1.*no checkpoint.*lower --lr"):
        train_and_evaluate(tiny_config("train.lr=1e30"), tmp_path / "run", **QUIET)


def test_incompatible_workdir_is_refused_unless_overwrite(tiny_config, one_epoch_copy):
    workdir = one_epoch_copy
    with pytest.raises(TrainingError, match=r"another config \(model.width: 4 -> 8\).*--overwrite"):
        train_and_evaluate(tiny_config("model.width=8"), workdir, **QUIET)
    train_and_evaluate(tiny_config("model.width=8"), workdir, overwrite=True, **QUIET)
    assert yaml.safe_load((workdir / "config.yaml").read_text())["model"]["width"] == 8


def test_bad_batch_sizes(tiny_config, tmp_path):
    with pytest.raises(
        TrainingError,
        match=r"per-replica batch size 32 .* not divisible by the ghost virtual batch size norm.virtual_batch_size=12",
    ):
        train_and_evaluate(
            tiny_config("norm.name=ghost", "norm.virtual_batch_size=12"), tmp_path / "a", **QUIET
        )
    with pytest.raises(TrainingError, match=r"batch_size 33 is not divisible by the 2 replicas"):
        train_and_evaluate(
            tiny_config("train.batch_size=33", "train.strategy=mirrored"), tmp_path / "b", **QUIET
        )


def test_unwritable_workdir(tiny_config, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(WorkdirError, match=r"Cannot write to the work directory"):
        train_and_evaluate(tiny_config(), blocker / "run", **QUIET)
    with pytest.raises(WorkdirError, match=r"is a file"):
        train_and_evaluate(tiny_config(), blocker, **QUIET)


# ------------------------------------------------------------------------ CLI


def test_cli_train_evaluate_and_export(shapes_dir, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    args = [
        "train",
        "--workdir",
        workdir,
        "--data-dir",
        shapes_dir,
        "--epochs",
        "1",
        "--model",
        "resnet8",
    ]
    args += [f"--set={s}" for s in TINY if not s.startswith(("train.epochs", "model.name"))]
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert "epoch 1/1: loss" in out and "final: loss" in out
    code, out, _ = cli(capsys, "evaluate", workdir, "--json", str(tmp_path / "eval.json"))
    assert code == 0 and "top-1" in out and "top-5" in out
    assert set(json.loads((tmp_path / "eval.json").read_text())) == {
        "bnkeras_evaluate",
        "loss",
        "top1",
        "top5",
        "examples",
    }
    # The formats themselves: tests/export (and the README command in test_end_to_end.py).
    export = ["export", workdir, "--out", str(tmp_path / "export"), "--formats", "keras"]
    code, out, err = cli(capsys, *export)
    assert code == 0, err
    assert (
        json.loads((tmp_path / "export" / "report.json").read_text())["inputs"] == "dataset batch"
    )


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--config", "nope"], "Unknown preset 'nope'"),
        (["--dataset", "no_such_dataset"], "Unknown dataset 'no_such_dataset'"),
        (["--dataset", "folder", "--data-dir", "/nonexistent/images"], "does not exist"),
        (["--set", "train.nope=1"], "Unknown config key train.nope"),
    ],
)
def test_cli_bad_input_is_a_clean_error(tmp_path, capsys, argv, message):
    code, _, err = cli(capsys, "train", "--workdir", str(tmp_path / "run"), *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_cli_help(capsys):
    for command in ("train", "evaluate", "export"):
        assert main([command, "--help"]) == 0
    assert "--precise-bn-batches" in capsys.readouterr().out


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "bnkeras", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("bnkeras ")


def test_nan_after_a_good_epoch_keeps_that_checkpoint(tiny_config, one_epoch_copy):
    from bnkeras.training.trainer import EpochEnd, nan_message

    workdir = one_epoch_copy
    state = json.loads((workdir / "checkpoints" / "state.json").read_text())
    model = keras.saving.load_model(workdir / "model.keras")
    callback = EpochEnd(workdir, workdir, tiny_config(), state, True)
    callback.set_model(model)
    callback.on_epoch_begin(1)
    callback.on_epoch_end(
        1, {"loss": float("nan"), "accuracy": 0.1, "val_loss": 1.0, "val_accuracy": 0.1}
    )
    assert callback.nan_epoch == 2 and model.stop_training
    assert json.loads((workdir / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert [r["epoch"] for r in read_log(workdir)] == [1.0]  # no row for the NaN epoch
    message = nan_message(callback.nan_epoch, callback.state, workdir)
    assert "NaN in epoch 2" in message and "last good checkpoint (epoch 1) is kept" in message


def test_train_from_an_image_folder(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    for split, count in (("train", 24), ("val", 8)):
        for label, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(count):
                pixels = np.clip(rng.normal(colour, 20, (24, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    workdir = tmp_path / "run"
    sets = [f"--set={s}" for s in TINY if not s.startswith("data.")] + [
        "--set=data.image_size=16",
        "--set=train.batch_size=8",
    ]
    code, out, err = cli(
        capsys,
        "train",
        "--workdir",
        str(workdir),
        "--dataset",
        "folder",
        "--data-dir",
        str(root),
        *sets,
    )
    assert code == 0, err
    assert "image folder" in out and "2 classes" in out
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["train_examples"] == 48 and metrics["eval_examples"] == 16


def test_evaluate_a_model_file(one_epoch_run, shapes_dir, tmp_path, capsys):
    workdir = one_epoch_run[0]
    code, _, err = cli(capsys, "evaluate", str(workdir / "model.keras"))
    assert code == 2 and "needs --dataset" in err
    code, out, err = cli(
        capsys,
        "evaluate",
        str(workdir / "model.keras"),
        "--dataset",
        "bnkeras_shapes",
        "--data-dir",
        shapes_dir,
    )
    assert code == 0, err
    assert "(1000 images)" in out
    code, _, err = cli(capsys, "evaluate", str(tmp_path / "missing"))
    assert code == 2 and "neither a training work directory nor a .keras model file" in err


def test_log_rows_past_the_last_checkpoint_are_dropped_on_resume(tiny_config, one_epoch_copy):
    """Killed between writing an epoch's log row and its checkpoint: the row goes."""
    from bnkeras.training.trainer import append_log

    workdir = one_epoch_copy
    row = {
        "epoch": 2,
        "lr": 0.1,
        "loss": 1.0,
        "accuracy": 0.5,
        "val_loss": 1.0,
        "val_accuracy": 0.5,
        "seconds": 1.0,
    }
    append_log(workdir, row)
    train_and_evaluate(tiny_config(), workdir, **QUIET)
    assert [r["epoch"] for r in read_log(workdir)] == [1.0]
    assert not list(workdir.glob(".*.tmp-*"))


def test_a_run_leaves_the_global_seed_and_the_collector_as_it_found_them(tiny_config, tmp_path):
    """A library call leaves the process as it found it (design rule 15): the seed, the
    collector, and matplotlib's backend and figures (before, curves.png switched the
    process to Agg: a notebook lost its inline plots)."""
    import gc

    import matplotlib
    import matplotlib.pyplot as plt

    tf.random.set_seed(4321)
    backend = matplotlib.get_backend()
    matplotlib.use("svg")  # not the Agg a PNG is drawn with
    gc.unfreeze()  # the test processes freeze their heap (tests/conftest.py)
    try:
        train_and_evaluate(tiny_config(), tmp_path / "run", progress=0)
        assert (gc.isenabled(), gc.get_freeze_count()) == (True, 0)
        assert matplotlib.get_backend() == "svg" and plt.get_fignums() == []
    finally:
        gc.collect()
        gc.freeze()
        matplotlib.use(backend)
    assert (tmp_path / "run" / "curves.png").read_bytes().startswith(b"\x89PNG")
    assert tf.compat.v1.random.get_seed(None)[0] == 4321  # not the run's train.seed


def test_a_ctrl_c_after_the_last_batch_still_stops_the_run(tiny_config, tmp_path, monkeypatch):
    """Ctrl-C only sets a flag that is read between batches: one during the last epoch's
    end (its checkpoint) came after the last read. Before, `fit` ended and the stop was
    lost: `bnkeras reproduce` went on to its next seed (a SIGTERM ignored for minutes)."""
    import os

    from bnkeras.training.trainer import TrainingInterrupted

    def ctrl_c_at_the_epochs_end(self, epoch, logs=None):
        os.kill(os.getpid(), signal.SIGINT)  # the run's handler: it sets the flag

    monkeypatch.setattr(keras.callbacks.TerminateOnNaN, "on_epoch_end", ctrl_c_at_the_epochs_end)
    with pytest.raises(TrainingInterrupted, match="rerun the same command"):
        train_and_evaluate(tiny_config(), tmp_path / "run", progress=0)
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    monkeypatch.undo()
    metrics = train_and_evaluate(tiny_config(), tmp_path / "run", progress=0)  # the rerun
    assert metrics["epochs_completed"] == 1 and (tmp_path / "run" / "metrics.json").exists()
