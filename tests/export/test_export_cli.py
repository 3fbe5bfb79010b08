import json

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.cli import main
from bnkeras.export import count_bn, pipeline, verify
from bnkeras.export.fold import FoldResult, fold_batchnorm
from tests import harness
from tests.export.test_fold import randomize


@pytest.fixture
def mobilenet(tmp_path, rng):
    model = keras.applications.MobileNetV2(
        input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10
    )
    randomize(model, rng)
    path = tmp_path / "mobilenet.keras"
    model.save(path)
    return model, path


def test_mobilenet_v2_through_all_formats(mobilenet, tmp_path, capsys):
    model, path = mobilenet
    out = tmp_path / "export"
    assert main(["export", str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # Counted here from the model: every BN of MobileNetV2 follows a conv and folds.
    bns = sum(isinstance(la, keras.layers.BatchNormalization) for la in model.layers)
    assert bns > 0
    assert f"BN layers: {bns} before, 0 after ({bns} folded, 0 kept as affine)" in printed
    assert "inference latency" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["verification"]["passed"]
    assert {f["format"] for f in report["verification"]["formats"]} == {
        "keras",
        "saved_model",
        "onnx",
    }
    assert all(o["max_abs"] < 1e-4 for f in report["verification"]["formats"] for o in f["outputs"])
    layers = report["verification"]["layers"]  # every folded layer against conv -> BN
    assert len(layers) == bns and all(c["passed"] for c in layers)
    assert {e["bn"] for e in report["fold"]["entries"]} == {
        layer.name for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert report["fold"]["params_after"] < report["fold"]["params_before"]
    folded = keras.saving.load_model(out / "model_folded.keras")
    assert count_bn(folded) == 0
    assert (out / "saved_model" / "saved_model.pb").is_file()
    import onnx

    graph = onnx.load(out / "model.onnx").graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def _conv_bn_model(tmp_path, rng):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            bnkeras.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    randomize(model, rng)
    path = tmp_path / "small.keras"
    model.save(path)
    return model, path


def test_corrupted_fold_fails_verification_and_exits_non_zero(tmp_path, rng, monkeypatch, capsys):
    model, path = _conv_bn_model(tmp_path, rng)

    def corrupted(m):
        result = fold_batchnorm(m)
        kernel = result.model.layers[1].kernel
        kernel.assign(kernel * 1.01)
        return FoldResult(result.model, result.report)

    monkeypatch.setattr(pipeline, "fold_batchnorm", corrupted)
    assert main(["export", str(path), "--out", str(tmp_path / "out")]) == 1
    assert "verification FAILED" in capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert not report["verification"]["passed"]


def test_verify_reports_errors(rng, tmp_path):
    model, _ = _conv_bn_model(tmp_path, rng)
    x = harness.random_batch(rng, (4, 8, 8, 3))
    good = fold_batchnorm(model).model
    report = verify(model, x, folded=good)
    assert report.passed and report.checks[0].outputs[0].max_abs < 1e-5
    bad = fold_batchnorm(model).model
    bad.layers[-1].bias.assign(bad.layers[-1].bias + 1e-3)
    report = verify(model, x, folded=bad)
    assert not report.passed
    assert report.checks[0].outputs[0].max_abs == pytest.approx(1e-3, rel=1e-2)
    assert "FAILED" in str(report)


def test_model_without_bn_still_exports(tmp_path, rng):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    model.save(tmp_path / "plain.keras")
    assert main(["export", str(tmp_path / "plain.keras"), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["fold"]["bn_before"] == 0 and report["verification"]["passed"]


def test_writer_failure_is_reported_not_raised(tmp_path, rng, monkeypatch):
    _, path = _conv_bn_model(tmp_path, rng)

    def broken(*args):
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(pipeline, "write_onnx", broken)
    assert main(["export", str(path), "--out", str(tmp_path / "out")]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    onnx_check = [f for f in report["verification"]["formats"] if f["format"] == "onnx"][0]
    assert "converter exploded" in onnx_check["error"]


def _error(capsys, argv):
    assert main(argv) == 2
    return capsys.readouterr().err


def test_bad_sources(tmp_path, capsys):
    assert "does not exist" in _error(
        capsys, ["export", str(tmp_path / "nope.keras"), "--out", str(tmp_path / "o")]
    )
    (tmp_path / "empty_dir").mkdir()
    assert "no model.keras" in _error(
        capsys, ["export", str(tmp_path / "empty_dir"), "--out", str(tmp_path / "o")]
    )
    (tmp_path / "notes.txt").write_text("hello")
    assert "not a Keras model file" in _error(
        capsys, ["export", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "o")]
    )
    (tmp_path / "broken.keras").write_text("not a zip")
    assert "could not be loaded" in _error(
        capsys, ["export", str(tmp_path / "broken.keras"), "--out", str(tmp_path / "o")]
    )
    assert not (tmp_path / "o").exists()


def test_unregistered_custom_layer_is_named(tmp_path, capsys):
    class Unregistered(keras.layers.Layer):
        def call(self, x):
            return x

    model = keras.Sequential([keras.Input((3,)), Unregistered(), keras.layers.Dense(2)])
    model.save(tmp_path / "custom.keras")
    err = _error(capsys, ["export", str(tmp_path / "custom.keras"), "--out", str(tmp_path / "o")])
    assert "not registered: Unregistered" in err


def test_export_help(capsys):
    assert main(["export", "--help"]) == 0
    assert "--opset" in capsys.readouterr().out


def test_multiple_inputs_and_outputs_export(tmp_path, rng):
    a, b = keras.Input((6, 6, 3), name="a"), keras.Input((4,), name="b")
    x = keras.layers.GlobalAveragePooling2D()(
        keras.layers.BatchNormalization()(keras.layers.Conv2D(3, 3)(a))
    )
    y = keras.layers.BatchNormalization()(keras.layers.Dense(3)(b))
    model = keras.Model([a, b], [keras.layers.Add()([x, y]), y])
    randomize(model, rng)
    model.save(tmp_path / "multi.keras")
    result = pipeline.export_model(tmp_path / "multi.keras", tmp_path / "out")
    assert result.passed
    assert len(result.report["verification"]["formats"][0]["outputs"]) == 2
    np.testing.assert_equal(result.report["fold"]["bn_after"], 0)


def test_converter_noise_goes_to_the_export_log(tmp_path, capfd):
    """tf2onnx logs a traceback when its optimize_transpose fails on a convolution's hard
    sigmoid (as in MobileNetV3, which tests/export/test_zoo.py converts): the log has it,
    the screen does not."""
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Activation("hard_sigmoid")(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(outputs)))
    model.save(tmp_path / "v3.keras")
    argv = ["export", str(tmp_path / "v3.keras"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--formats", "onnx"]) == 0
    captured = capfd.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "tf2onnx" not in captured.out + captured.err
    assert "Failed to apply optimize_transpose" in (tmp_path / "out" / "export.log").read_text()


def test_a_format_named_twice_is_written_once():
    assert pipeline.check_formats(["onnx", " keras", "onnx", ""]) == ["onnx", "keras"]
