"""`bnkeras export --int8`: a calibrated int8 LiteRT model judged by top-1 on the run's data."""

import json

import keras
import numpy as np
import pytest

from bnkeras.cli import main
from bnkeras.export.litert import run_litert
from tests.export.test_fold import randomize
from tests.training.conftest import (  # noqa: F401 - fixtures
    finished_run,
    one_epoch_run,
    shapes_dir,
)


def test_int8_on_a_run_is_judged_by_accuracy_drop(finished_run, tmp_path, capsys):  # noqa: F811
    workdir = finished_run  # a two-epoch run (export only reads it)
    out = tmp_path / "export"
    code = main(["export", str(workdir), "--out", str(out), "--formats", "keras", "--int8"])
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    int8 = report["int8"]
    assert code == (0 if int8["passed"] else 1)
    assert int8["examples"] == 128  # data.eval_split=test[:128]
    assert int8["data"] == "run's training data / evaluation set"
    drop = 100 * (int8["accuracy_float"] - int8["accuracy_int8"])
    assert int8["accuracy_drop_points"] == pytest.approx(drop)
    assert int8["passed"] == (drop <= 1.0)
    assert 0.1 < int8["size_ratio"] < 0.6  # int8 weights: about a quarter of float32
    assert "int8 LiteRT (128 examples of the run's training data / evaluation set)" in printed
    assert {p.name for p in out.iterdir()} >= {"model.tflite", "model_int8.tflite"}


def test_int8_without_labels_uses_top1_agreement(tmp_path, rng, capsys):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(4),
        ]
    )
    randomize(model, rng)
    model.save(tmp_path / "m.keras")
    argv = ["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--int8"]
    code = main([*argv, "--formats", "keras", "--batch-size", "32"])
    report = json.loads((tmp_path / "out" / "report.json").read_text())["int8"]
    x = rng.normal(size=(32, 8, 8, 3)).astype("float32")
    float_top = run_litert(model, tmp_path / "out" / "model.tflite", x)[0].argmax(-1)
    int8_top = run_litert(model, tmp_path / "out" / "model_int8.tflite", x)[0].argmax(-1)
    assert np.mean(float_top == int8_top) > 0.5  # a quantized copy, not another model
    assert report["examples"] == 32 and "accuracy_int8" not in report
    assert report["passed"] == (100 * (1 - report["top1_agreement"]) <= 1.0)
    assert code == (0 if report["passed"] else 1)


def test_int8_needs_a_classifier(tmp_path, capsys):
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3)])
    model.save(tmp_path / "m.keras")
    argv = ["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out"), "--int8"]
    assert main(argv) == 2
    assert "Received: outputs=[(None, 6, 6, 4)]" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
