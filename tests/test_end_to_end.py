"""The README's main command, end to end: the demo preset trains on the embedded
dataset, then `bnkeras export` folds, writes and verifies the three formats."""

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_demo_preset_then_export(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    workdir = tmp_path / "runs" / "demo"
    train = subprocess.run(
        [sys.executable, "-m", "bnkeras", "train", "--config", "demo", "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["top1"] >= 0.90, metrics
    assert metrics["epochs_completed"] == 8
    export = subprocess.run(
        [sys.executable, "-m", "bnkeras", "export", str(workdir), "--out", str(workdir / "export")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert export.returncode == 0, export.stderr[-3000:]
    report = json.loads((workdir / "export" / "report.json").read_text())
    assert report["verification"]["passed"] and report["fold"]["bn_after"] == 0
    assert report["inputs"] == "dataset batch"
    print(
        f"demo: top-1 {metrics['top1']:.4f} in {metrics['seconds']} s; export in {report['seconds']} s"
    )
