"""Real `bnkeras` runs: quiet stderr, progress through a pipe, curves, the top-5 rule."""

import json
import logging
import os
import re
import subprocess
import sys

import keras
import numpy as np

from bnkeras import _logging
from bnkeras.cli import main
from bnkeras.training import metrics
from bnkeras.training.curves import plot_curves
from bnkeras.training.progress import StepProgress, fit_progress
from tests.test_cli import TF_LOG


def _bnkeras(*argv, **environment):
    """`python -m bnkeras ARGV` in a fresh process, stdout and stderr through pipes.

    The environment is a newcomer's (without the TensorFlow log settings of the tests),
    plus `environment`.
    """
    env = {k: v for k, v in os.environ.items() if k not in _logging.TF_QUIET_ENVIRONMENT}
    env.update(environment)
    return subprocess.run(
        [sys.executable, "-m", "bnkeras", *argv],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )


def test_verbose_and_a_users_log_level_bring_tensorflow_logs_back():
    """(A real train and export through pipes, with quiet stderr and progress lines,
    is the end-to-end test, tests/test_end_to_end.py.)"""
    # --verbose leaves TensorFlow's logging alone (an export that stops at its input).
    verbose = _bnkeras("--verbose", "export", "none.keras", "--out", "o")
    assert verbose.returncode == 2 and "none.keras does not exist" in verbose.stderr
    assert TF_LOG.search(verbose.stderr), verbose.stderr
    # A user's TF_CPP_MIN_LOG_LEVEL wins over the command's default.
    user = _bnkeras("export", "none.keras", "--out", "o", TF_CPP_MIN_LOG_LEVEL="0")
    assert user.returncode == 2 and TF_LOG.search(user.stderr), user.stderr


def _fit(progress, epochs=2):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((16, 3), "float32"), np.zeros((16, 2), "float32")
    model.fit(x, y, batch_size=4, epochs=epochs, verbose=0, callbacks=[progress])


def _progress_messages(caplog):
    """The progress records (TensorFlow may log too, e.g. a retracing warning)."""
    return [r.getMessage() for r in caplog.records if r.name.startswith("bnkeras")]


def test_step_progress_logs_each_interval_and_each_epoch_end(caplog):
    caplog.set_level(logging.INFO, logger="bnkeras")
    _fit(StepProgress(batch_size=4, every_seconds=0))
    messages = _progress_messages(caplog)
    assert [m.split(":")[0] for m in messages] == [
        f"epoch {e}/2 step {s}/4" for e in (1, 2) for s in (1, 2, 3, 4)
    ]
    assert re.fullmatch(r"epoch 1/2 step 1/4: first step \d+\.\d s, loss \d\.\d{4}", messages[0])
    assert re.fullmatch(r"epoch 2/2 step 4/4: \d+ images/s, loss \d\.\d{4}, ETA 0:00", messages[-1])
    caplog.clear()
    _fit(StepProgress(batch_size=4, every_seconds=3600))
    assert [m.split(":")[0] for m in _progress_messages(caplog)] == [
        "epoch 1/2 step 4/4",
        "epoch 2/2 step 4/4",
    ]


def test_fit_progress_chooses_by_terminal():
    assert fit_progress(0, 32) == (0, [])
    assert fit_progress(2, 32) == (2, [])
    verbose, callbacks = fit_progress(None, 32)  # pytest captures stdout: not a terminal
    assert verbose == 0 and [type(c) for c in callbacks] == [StepProgress]
    assert callbacks[0].batch_size == 32


def test_curves_png(tmp_path):
    from PIL import Image

    rows = [
        {"epoch": e, "lr": lr, "loss": 2 - e / 4, "accuracy": a, "val_loss": 2.1 - e / 5}
        | {"val_accuracy": va}
        for e, lr, a, va in ((1, 0.1, 0.3, 0.35), (2, 0.05, 0.5, 0.55), (3, 0.0, 0.6, 0.5))
    ]
    plot_curves(tmp_path, [])
    assert not (tmp_path / "curves.png").exists()
    plot_curves(tmp_path, rows, top1=0.5)
    with Image.open(tmp_path / "curves.png") as image:
        assert image.size == (1400, 400)


def test_top5_only_for_more_than_5_classes():
    assert metrics.top5_metrics(metrics.TOP5_MIN_CLASSES - 1) == []
    [top5] = metrics.top5_metrics(metrics.TOP5_MIN_CLASSES)
    assert top5.name == "top5" and top5.k == 5


def test_evaluate_leaves_top5_out_for_3_classes(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "images"
    for label in ("a", "b", "c"):
        (root / "val" / label).mkdir(parents=True)
        (root / "train" / label).mkdir(parents=True)
        for index in range(2):
            Image.new("RGB", (8, 8), (index * 100, 0, 0)).save(
                root / "val" / label / f"{index}.png"
            )
            Image.new("RGB", (8, 8)).save(root / "train" / label / f"{index}.png")
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "m.keras")
    argv = ["evaluate", str(tmp_path / "m.keras"), "--dataset", "folder", "--batch-size", "2"]
    argv += ["--data-dir", str(root)]
    assert main([*argv, "--json", str(tmp_path / "m.json")]) == 0
    out = capsys.readouterr().out
    assert "top-1" in out and "top-5" not in out and "(6 images)" in out
    assert json.loads((tmp_path / "m.json").read_text())["top5"] is None
