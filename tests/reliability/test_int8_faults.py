"""`bnkeras export --int8` judges the int8 model with a check that can fail: a single
output unit is refused (its top-1 is always unit 0), and an int8 model that computes
something else fails the check."""

import keras
import numpy as np

from bnkeras.cli import main
from bnkeras.export.litert import check_int8, write_litert_int8


def _model(units, seed):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(8, 3),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.Flatten(),  # top-1 varies with the input (pooled features did not)
            keras.layers.Dense(units),
        ]
    )
    return model


def test_int8_of_a_single_output_unit_is_refused(tmp_path, capsys):
    """Before: "top-1 agreement 100.0%, PASSED" for any int8 model of a one-logit model."""
    _model(1, seed=0).save(tmp_path / "logit.keras")
    out = tmp_path / "out"
    argv = ["export", str(tmp_path / "logit.keras"), "--out", str(out), "--int8"]
    assert main([*argv, "--formats", "keras"]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("bnkeras ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "single output unit" in lines[0] and "Received: outputs=[(None, 1)]" in lines[0]
    assert not out.exists()


def test_a_wrong_int8_model_fails_the_check(tmp_path, capsys):
    """The check run by `export --int8`, given the int8 model of another network: it must
    fail, by top-1 agreement (no labels) and by accuracy drop (labels)."""
    model = _model(4, seed=0)
    model.save(tmp_path / "m.keras")
    out = tmp_path / "out"
    argv = ["export", str(tmp_path / "m.keras"), "--out", str(out), "--int8"]
    main([*argv, "--formats", "keras", "--batch-size", "64"])
    capsys.readouterr()
    x = np.random.default_rng(0).normal(size=(64, 8, 8, 3)).astype("float32")
    wrong = tmp_path / "wrong_int8.tflite"
    write_litert_int8(_model(4, seed=1), wrong, [x])
    right = check_int8(model, out / "model.tflite", out / "model_int8.tflite", [(x, None)], 10.0)
    assert right["passed"], right  # the real int8 model passes a lenient check ...
    unlabelled = check_int8(model, out / "model.tflite", wrong, [(x, None)], 10.0)
    assert not unlabelled["passed"] and unlabelled["top1_agreement"] < 0.9, unlabelled
    # labels the float model gets right: the wrong model's accuracy drops
    labels = keras.ops.convert_to_numpy(model(x)).argmax(-1)
    assert len(set(labels)) > 1  # a constant top-1 would agree with any constant model
    labelled = check_int8(model, out / "model.tflite", wrong, [(x, labels)], 10.0)
    assert not labelled["passed"] and labelled["accuracy_drop_points"] > 10, labelled
