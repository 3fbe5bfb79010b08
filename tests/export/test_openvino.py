"""The OpenVINO format: converted from the model's inference function, run in OpenVINO Runtime."""

import json

import keras
import numpy as np
import pytest

from bnkeras.cli import main
from bnkeras.export import fold_batchnorm, pipeline, verify
from bnkeras.export.openvino import openvino_runner, write_openvino
from tests import harness
from tests.export.test_fold import randomize
from tests.export.test_onnx import _grouped_conv_model, _normalization_model

pytest.importorskip("openvino")


def _folded_model(rng):
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.BatchNormalization()(keras.layers.Conv2D(8, 3, use_bias=False)(x))
    x = keras.layers.ReLU()(x)
    x = keras.layers.BatchNormalization()(keras.layers.DepthwiseConv2D(3, padding="same")(x))
    model = keras.Model(inputs, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling2D()(x)))
    randomize(model, rng)
    return model


def test_folded_model_verifies_at_two_sizes_and_a_wrong_one_fails(tmp_path, rng):
    model = _folded_model(rng)
    result = fold_batchnorm(model)
    path = tmp_path / "model.xml"
    write_openvino(result.model, path)
    assert path.is_file() and path.with_suffix(".bin").is_file()
    x = rng.uniform(0, 255, (4, 12, 12, 3)).astype("float32")
    report = verify(model, x, openvino=path)
    assert report.passed, report
    (check,) = report.checks
    assert check.format == "openvino" and len(check.outputs) == 2  # run-time size: two sizes
    assert all(o.max_abs < 1e-4 for o in check.outputs)
    # The check can fail: the IR of a model with other weights does not verify.
    other = _folded_model(np.random.default_rng(99))
    write_openvino(other, tmp_path / "other.xml")
    assert not verify(model, x, openvino=tmp_path / "other.xml").passed


@pytest.mark.parametrize("build", [_normalization_model, _grouped_conv_model])
def test_preprocessing_and_grouped_convs_convert(build, tmp_path, rng):
    model = build()
    write_openvino(model, tmp_path / "model.xml")
    x = harness.random_batch(rng, (3, *model.inputs[0].shape[1:]))
    (got,) = openvino_runner(tmp_path / "model.xml")(x)
    np.testing.assert_allclose(got, model(x), atol=1e-5, rtol=1e-5)


def test_export_writes_and_verifies_openvino_and_replaces_it(tmp_path, rng):
    model = _folded_model(rng)
    model.save(tmp_path / "m.keras")
    argv = ["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--formats", "keras,openvino"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["files"][:3] == ["model_folded.keras", "model.xml", "model.bin"]
    formats = {f["format"]: f for f in report["verification"]["formats"]}
    assert formats["openvino"]["passed"] and len(formats["openvino"]["outputs"]) == 2
    # A previous export with OpenVINO files is recognised as one and replaced.
    assert main([*argv, "--formats", "openvino", "--overwrite"]) == 0
    assert not (tmp_path / "out" / "model_folded.keras").exists()


def test_missing_openvino_is_a_clean_error(tmp_path, rng, monkeypatch, capsys):
    model = _folded_model(rng)
    model.save(tmp_path / "m.keras")
    monkeypatch.setattr(pipeline, "openvino_available", lambda: False)
    argv = ["export", str(tmp_path / "m.keras"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--formats", "keras,openvino"]) == 2
    assert 'pip install "bnkeras[openvino]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_only_the_models_outputs_in_their_order(tmp_path, rng):
    """Swish keeps tensors for its custom gradient; Keras's own OpenVINO export makes
    each an extra output (EfficientNet: 23 outputs instead of 1)."""
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(5, activation="swish")(inputs)
    first = keras.layers.Dense(3, activation="swish")(hidden)
    model = keras.Model(inputs, [first, keras.layers.Dense(2)(hidden)])
    write_openvino(model, tmp_path / "model.xml")
    x = harness.random_batch(rng, (4, 6))
    outputs = openvino_runner(tmp_path / "model.xml")(x)
    assert [o.shape for o in outputs] == [(4, 3), (4, 2)]
    for got, want in zip(outputs, model(x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
