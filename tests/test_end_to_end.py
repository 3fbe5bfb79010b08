"""The README's main command, end to end, as a newcomer runs it (a fresh environment
without TensorFlow's log settings, stdout and stderr through pipes): the demo preset
trains on the embedded dataset, then `bnkeras export` folds, writes and verifies the
formats. Also checks what the screen shows: no TensorFlow log lines on stderr, and
progress lines instead of a progress bar on a pipe."""

import json
import re

import pytest

from bnkeras.training.config import build_config
from tests.test_cli import TF_LOG
from tests.training.test_cli_run import _bnkeras

EPOCHS = build_config("demo", [], {})["train"]["epochs"]
PROGRESS = re.compile(
    rf"epoch (\d)/{EPOCHS} step (\d+)/(\d+): (first step \d+\.\d s, loss \d\.\d{{4}}"
    r"|\d+ images/s, loss \d\.\d{4}, ETA \d+:\d\d)"
)


def _check_progress(stdout):
    """Each epoch: progress lines (the last at its last step), then its one summary line."""
    assert "\x1b" not in stdout and "━" not in stdout
    lines = stdout.splitlines()
    for epoch in range(1, EPOCHS + 1):
        progress = [
            i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}/{EPOCHS} step")
        ]
        summary = [
            i for i, line in enumerate(lines) if line.startswith(f"epoch {epoch}/{EPOCHS}: loss")
        ]
        assert progress and len(summary) == 1 and progress[-1] == summary[0] - 1, stdout
        matches = [PROGRESS.fullmatch(lines[i]) for i in progress]
        assert all(matches), [lines[i] for i in progress]
        step, steps = matches[-1].group(2, 3)
        assert step == steps, lines[progress[-1]]  # the last line at the epoch's last step


@pytest.mark.slow
def test_demo_preset_then_export(tmp_path):
    tfds = {"TFDS_DATA_DIR": str(tmp_path / "tfds")}
    workdir = tmp_path / "runs" / "demo"
    train = _bnkeras("train", "--config", "demo", "--workdir", str(workdir), **tfds)
    assert train.returncode == 0, train.stderr[-3000:]
    assert not TF_LOG.search(train.stderr), train.stderr
    _check_progress(train.stdout)
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["top1"] >= 0.90, metrics
    assert metrics["epochs_completed"] == EPOCHS
    out = workdir / "export"
    export = _bnkeras("export", str(workdir), "--out", str(out), "--overwrite", **tfds)
    assert export.returncode == 0, export.stderr[-3000:]
    assert not TF_LOG.search(export.stderr), export.stderr
    assert f"wrote {out} (all formats verified)" in export.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["passed"] and report["fold"]["bn_after"] == 0
    assert report["inputs"] == "dataset batch"
    print(
        f"demo: top-1 {metrics['top1']:.4f} in {metrics['seconds']} s; export in {report['seconds']} s"
    )
