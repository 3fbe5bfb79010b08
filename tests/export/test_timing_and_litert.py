"""The shared interleaved timing helper, and the LiteRT format end to end."""

import json

import keras
import numpy as np
import pytest

from bnkeras._timing import interleaved_times, paired_ratio
from bnkeras.cli import main
from bnkeras.export import pipeline
from bnkeras.export.litert import run_litert, write_litert
from bnkeras.export.writers import write_saved_model
from tests.export.test_fold import randomize


def test_interleaved_times_runs_every_candidate_once_per_round_in_varying_order():
    calls = []
    candidates = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = interleaved_times(candidates, rounds=20, warmup=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]  # warm-up, untimed
    rounds = [calls[i : i + 3] for i in range(6, len(calls), 3)]
    assert len(rounds) == 20 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order changes between rounds
    assert {name: len(t) for name, t in times.items()} == {"a": 20, "b": 20, "c": 20}


def test_paired_ratio_is_the_median_of_round_ratios():
    ratio, (low, high) = paired_ratio([2.0, 4.0, 6.0, 8.0, 10.0], [1.0, 2.0, 2.0, 4.0, 10.0])
    # round ratios 2, 2, 3, 2, 1
    assert ratio == 2.0 and (low, high) == (2.0, 2.0)


def test_litert_export_matches_the_unfolded_model(tmp_path, rng):
    a, b = keras.Input((6, 6, 3), name="a"), keras.Input((4,), name="b")
    x = keras.layers.GlobalAveragePooling2D()(
        keras.layers.BatchNormalization()(keras.layers.Conv2D(3, 3)(a))
    )
    y = keras.layers.BatchNormalization()(keras.layers.Dense(3)(b))
    model = keras.Model([a, b], [keras.layers.Add()([x, y]), keras.layers.Dense(5)(y)])
    randomize(model, rng)
    model.save(tmp_path / "multi.keras")
    argv = ["export", str(tmp_path / "multi.keras"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--formats", "keras,litert"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    litert = [f for f in report["verification"]["formats"] if f["format"] == "litert"][0]
    assert litert["passed"] and len(litert["outputs"]) == 2
    assert all(o["max_abs"] < 1e-5 for o in litert["outputs"])
    inputs = [rng.normal(size=(5, 6, 6, 3)).astype("float32"), rng.normal(size=(5, 4))]
    inputs[1] = inputs[1].astype("float32")
    outputs = run_litert(model, tmp_path / "out" / "model.tflite", inputs)  # another batch size
    expected = model(inputs, training=False)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_litert_is_converted_from_the_given_saved_model_or_a_temporary_one(tmp_path, rng):
    def dense():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        randomize(model, rng)
        return model

    model, other = dense(), dense()
    x = rng.normal(size=(5, 4)).astype("float32")
    write_saved_model(other, tmp_path / "other")
    write_litert(model, tmp_path / "given.tflite", tmp_path / "other")
    # The given SavedModel is converted (another model's, to tell), not a new one of `model`.
    np.testing.assert_allclose(
        run_litert(model, tmp_path / "given.tflite", x)[0], other(x), rtol=1e-5, atol=1e-6
    )
    write_litert(model, tmp_path / "own.tflite")
    np.testing.assert_allclose(
        run_litert(model, tmp_path / "own.tflite", x)[0], model(x), rtol=1e-5, atol=1e-6
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["given.tflite", "other", "own.tflite"]


def test_latency_never_calls_noise_a_slowdown():
    # 0.81x with rounds from 0.70x to 1.10x: noise, not a slowdown
    assert (
        pipeline.latency_verdict(0.81, 0.70, 1.10) == "no measurable difference (ratio 0.70-1.10)"
    )
    assert pipeline.latency_verdict(1.16, 1.12, 1.21) == (
        "folded 1.16x the speed of unfolded (interquartile 1.12-1.21)"
    )
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    latency = pipeline.measure_latency(model, model, np.ones((2, 4), "float32"), budget_seconds=0)
    assert latency["rounds"] == 3
    assert latency["unfolded_ms"] > 0 and latency["folded_ms"] > 0


@pytest.mark.parametrize(
    "unfolded, folded, expected",
    [
        # round ratios 2, 3, 2.5: median 2.5, interquartile 2.25-2.75
        (
            [0.004, 0.006, 0.005],
            [0.002, 0.002, 0.002],
            "unfolded 5.00 ms, folded 2.00 ms; folded 2.50x the speed of unfolded "
            "(interquartile 2.25-2.75)",
        ),
        # round ratios 0.8, 1.2, 1.0: the range holds 1
        (
            [0.004, 0.006, 0.005],
            [0.005, 0.005, 0.005],
            "unfolded 5.00 ms, folded 5.00 ms; no measurable difference (ratio 0.90-1.10)",
        ),
    ],
)
def test_latency_is_the_paired_ratio_of_the_rounds(monkeypatch, unfolded, folded, expected):
    """The speed-up is unfolded / folded time, round by round: the median and quartiles
    of those ratios (known round times here), and the line says so."""
    calls = []

    def timed(candidates, rounds, warmup=1):
        calls.append(rounds)
        for run in candidates.values():
            run()
        return {"unfolded": unfolded[:rounds], "folded": folded[:rounds]}

    monkeypatch.setattr(pipeline, "interleaved_times", timed)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    latency = pipeline.measure_latency(model, model, np.ones((2, 4), "float32"), budget_seconds=0)
    assert calls == [1, 3]
    ratios = np.array(unfolded) / np.array(folded)
    assert latency["speedup"] == pytest.approx(np.median(ratios))
    assert latency["speedup_interquartile"] == pytest.approx(np.percentile(ratios, [25, 75]))
    assert latency["line"].endswith(expected)


@pytest.mark.parametrize("formats", ["litert", "keras,saved_model,onnx,litert"])
def test_every_format_is_in_the_report(tmp_path, rng, formats):
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.BatchNormalization()]
    )
    randomize(model, rng)
    model.save(tmp_path / "m.keras")
    result = pipeline.export_model(
        tmp_path / "m.keras", tmp_path / "out", formats=formats.split(",")
    )
    assert result.passed
    assert [f["format"] for f in result.report["verification"]["formats"]] == formats.split(",")
    assert (tmp_path / "out" / "model.tflite").is_file()
