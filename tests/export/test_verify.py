"""Verification that can fail: scaled tolerances, logits, void references, per layer."""

import keras
import numpy as np
import pytest

from bnkeras.export import fold, fold_batchnorm, verify
from bnkeras.export.verification import (
    PIXEL_RANGE,
    UNKNOWN_SIZES,
    as_logits,
    compare_output,
    compute_dtypes,
    random_inputs,
)
from tests import harness
from tests.export.test_fold import randomize


@pytest.fixture(scope="module")
def untrained_mobilenet():
    """An untrained keras.applications model (softmax over 1000 classes) with
    random BN statistics, folded correctly."""
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None)
    randomize(model, np.random.default_rng(7))
    return model, fold_batchnorm(model)


def test_correct_fold_of_untrained_application_passes(untrained_mobilenet):
    model, result = untrained_mobilenet
    x = random_inputs(model, 4)
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert report.passed, report
    bns = sum(isinstance(la, keras.layers.BatchNormalization) for la in model.layers)
    assert len(report.layers) == len(result.report.folded) == bns > 0
    assert all(c.max_abs <= c.atol for c in report.layers)
    conv = report.layers[0]  # Conv1 and bn_Conv1 of the original on the model's input
    reference = model.get_layer("bn_Conv1")(model.get_layer("Conv1")(x), training=False)
    assert conv.layer == "Conv1" and conv.peak == pytest.approx(float(np.abs(reference).max()))
    assert f"max abs {max(report.layers, key=lambda c: c.max_abs / c.peak).max_abs:.3g}" in str(
        report
    )
    assert "chaotic" not in str(report)  # rounding of the inputs hardly moves it


def test_broken_fold_of_untrained_application_fails(untrained_mobilenet):
    """A doubled stem kernel and a zeroed projection kernel: the softmax output of
    the untrained model hardly moves, but verification must fail and name both."""
    model, _ = untrained_mobilenet
    broken = fold_batchnorm(model)
    stem = broken.model.get_layer("Conv1")
    stem.kernel.assign(stem.kernel * 2.0)
    project = broken.model.get_layer("block_1_project")
    project.kernel.assign(np.zeros(project.kernel.shape, "float32"))
    report = verify(model, random_inputs(model, 4), folded=broken.model, fold_report=broken.report)
    assert not report.passed
    assert {c.layer for c in report.layers if not c.passed} == {"Conv1", "block_1_project"}
    # Without the per-layer mode, the end-to-end check must not pass on a void reference.
    report = verify(model, random_inputs(model, 4), folded=broken.model)
    assert not report.passed
    assert "cannot detect a wrong model" in str(report)


def test_softmax_outputs_are_compared_as_logits(rng):
    inputs = keras.Input((6,))
    logits = keras.layers.Dense(5, name="logits")(inputs)
    model = keras.Model(inputs, keras.layers.Softmax(name="probs")(logits))
    logit_model = keras.Model(inputs, logits)
    x = harness.random_batch(rng, (4, 6))
    expected = np.asarray(logit_model(x), np.float64)
    got = as_logits(model(x), "softmax")
    np.testing.assert_allclose(got, expected - expected.mean(-1, keepdims=True), atol=1e-5)
    p = keras.activations.sigmoid(keras.ops.convert_to_tensor(expected, "float32"))
    np.testing.assert_allclose(as_logits(p, "sigmoid"), expected, atol=1e-4)
    candidate = keras.Model(inputs, keras.layers.Softmax()(keras.layers.Dense(5)(inputs)))
    kernel, bias = model.get_weights()
    candidate.set_weights([kernel, bias + np.eye(5)[0] * 1e-3])  # one logit moves
    report = verify(model, x, folded=candidate)
    assert not report.passed and "compared as logits" in str(report)
    candidate.set_weights([kernel, bias + 1e-3])  # all logits move: the same softmax
    assert verify(model, x, folded=candidate).passed


def test_constant_output_is_refused(rng):
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, kernel_initializer="zeros", bias_initializer="ones")
    model = keras.Model(inputs, dense(inputs))
    report = verify(model, harness.random_batch(rng, (4, 4)), folded=model)
    assert not report.passed
    assert "does not vary over the batch" in report.checks[0].outputs[0].note


def _conv_bn(shape, scale, rng, **conv):
    inputs = keras.Input(shape)
    x = keras.layers.BatchNormalization(name="bn")(keras.layers.Conv2D(4, 3, **conv)(inputs))
    model = keras.Model(inputs, keras.layers.Rescaling(scale)(x))
    randomize(model, rng)
    return model


@pytest.mark.parametrize("scale", [1e-10, 1e4])
def test_tolerance_scales_with_the_output(scale, rng):
    model = _conv_bn((6, 6, 3), scale, rng)
    x = harness.random_batch(rng, (4, 6, 6, 3))
    result = fold_batchnorm(model)
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert report.passed, report
    (check,) = report.checks[0].outputs
    peak = float(np.abs(model(x, training=False)).max())
    assert 1e-5 * peak <= check.atol < 1e-3 * peak  # scaled: not a fixed absolute value
    # A 1 % error in one kernel entry fails at either scale.
    conv = result.model.layers[1]
    conv.kernel.assign(conv.kernel.numpy() * np.where(np.arange(4) == 0, 1.01, 1.0))
    assert not verify(model, x, folded=result.model).passed


def test_inputs_in_the_expected_range():
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(2, 1)(keras.layers.Rescaling(1 / 255)(inputs)))
    x = random_inputs(model, 2)
    assert x.shape == (2, UNKNOWN_SIZES[0], UNKNOWN_SIZES[0], 3)
    assert PIXEL_RANGE[0] <= x.min() and x.max() <= PIXEL_RANGE[1] and x.max() > 100
    plain = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    assert random_inputs(plain, 64).min() < 0


def test_dynamic_dimensions_are_verified_at_a_second_size(monkeypatch, rng):
    """The channels_first bias collision reintroduced: a fold that is wrong only when
    the run-time width equals the channel count (40, the second size's width)."""
    channels = UNKNOWN_SIZES[1][1]
    inputs = keras.Input((3, None, None))
    conv = keras.layers.Conv2D(channels, 3, padding="same", data_format="channels_first")
    model = keras.Model(inputs, keras.layers.BatchNormalization(axis=1)(conv(inputs)))
    randomize(model, rng)
    monkeypatch.setattr(fold, "_misplaced_bias", lambda layer, shape: None)
    broken = fold_batchnorm(model)
    x = harness.random_batch(rng, (2, 3, 16, 24))
    report = verify(model, x, folded=broken.model)
    sizes = [o.inputs for o in report.checks[0].outputs]
    assert sizes == ["3x16x24", f"3x{UNKNOWN_SIZES[1][0]}x{channels}"]
    assert [o.passed for o in report.checks[0].outputs] == [True, False]
    monkeypatch.undo()
    good = fold_batchnorm(model)
    assert verify(model, x, folded=good.model, fold_report=good.report).passed


def test_mixed_precision_tolerances_come_from_the_layers(tmp_path, rng):
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _conv_bn((6, 6, 3), 1.0, rng, padding="same")
    finally:
        keras.config.set_dtype_policy("float32")
    model.save(tmp_path / "mixed.keras")
    loaded = keras.saving.load_model(tmp_path / "mixed.keras")
    assert compute_dtypes(loaded) == ["float16"]
    result = fold_batchnorm(loaded)
    report = verify(loaded, harness.random_batch(rng, (4, 6, 6, 3)), folded=result.model)
    assert report.passed, report
    assert report.tolerance_dtype == "float16" and report.rtol == 1e-2
    assert "tolerances for float16" in str(report)


def test_per_layer_mode_reaches_into_nested_models(rng):
    inner_seq = keras.Sequential(
        [keras.Input((6, 6, 3)), keras.layers.Conv2D(4, 3, name="seq_conv")], name="inner_seq"
    )
    inner_seq.add(keras.layers.BatchNormalization(name="seq_bn"))
    i = keras.Input((4, 4, 4))
    conv = keras.layers.Conv2D(4, 1, name="fn_conv")
    inner_fn = keras.Model(i, keras.layers.BatchNormalization()(conv(i)), name="inner_fn")
    outer = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(3, 1, name="top_conv")(outer)
    x = keras.layers.BatchNormalization()(x)
    model = keras.Model(outer, inner_fn(inner_seq(x)))
    randomize(model, rng)
    result = fold_batchnorm(model)
    x = harness.random_batch(rng, (3, 6, 6, 3))
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert report.passed, report
    assert sorted(c.layer for c in report.layers) == ["fn_conv", "seq_conv", "top_conv"]
    inner = result.model.get_layer("inner_fn").get_layer("fn_conv")
    inner.bias.assign(inner.bias + 0.5)
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert [c.layer for c in report.layers if not c.passed] == ["fn_conv"]


def test_max_rel_is_taken_over_the_elements_above_atol():
    reference = np.array([[100.0, 1e-9, -50.0]])
    candidate = reference + np.array([[1e-3, 1e-7, 0.0]])
    check = compare_output("out", reference, candidate, rtol=1e-4, atol=1e-6, across_batch=False)
    # 1e-7 on a 1e-9 reference is judged by atol alone; the relative error is 1e-3 / 100.
    assert check.passed
    assert check.max_rel == pytest.approx(1e-5)
    assert check.max_abs == pytest.approx(1e-3)
    broken = compare_output("out", reference, reference * 1.01, 1e-4, 1e-6, across_batch=False)
    assert not broken.passed and broken.max_rel == pytest.approx(0.01)


@keras.saving.register_keras_serializable(package="bnkeras_tests")
class FastSine(keras.layers.Layer):
    def call(self, x):
        return keras.ops.sin(1e6 * x)


def _chaotic_model():
    """conv -> BN -> sin(1e6 x): a float32 rounding of the inputs moves the output by O(1)."""
    inputs = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(3, 1, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, FastSine()(x))
    randomize(model, np.random.default_rng(3))
    return model


def test_a_chaotic_model_is_decided_by_the_per_layer_checks(rng):
    model = _chaotic_model()
    result = fold_batchnorm(model)
    x = harness.random_batch(rng, (4, 4, 4, 2))
    # End to end alone cannot decide: the output counts as failed, and says why.
    report = verify(model, x, folded=result.model)
    assert not report.passed
    assert "chaotic on these inputs" in str(report) and "count as failed" in str(report)
    # With the per-layer checks, the right fold passes ...
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert report.passed and "the per-layer checks decide" in str(report)
    # ... and a wrong one fails there.
    conv = result.model.get_layer("conv")
    conv.kernel.assign(conv.kernel * 1.01)
    report = verify(model, x, folded=result.model, fold_report=result.report)
    assert not report.passed and not report.layers[0].passed
