"""Fold speed: keras.applications ResNet50 inference before and after BN folding.

Three networks run side by side in this process, interleaved (one call of each
in a random order per round), as compiled inference functions: the original ResNet50 with BN, the
model from `bnkeras.export.fold_batchnorm`, and the same network built without
BN (every BN replaced by a no-op layer, convs with a bias): the limit
folding can reach. Random weights and random BN statistics; the table shows the
median latency, the speed-up over the unfolded model, and the largest output
difference. Then the whole `bnkeras export` (load, fold, .keras + SavedModel +
ONNX, verification of each) is timed, once per run. With `--runs N` both are repeated N
times and the table shows the ranges over the runs. The results go to stdout and to `--out`
(default docs/benchmarks/bench_fold.md, which the docs include) through
benchmarks/_common.py: machine, versions, date, load and the command line.

    python benchmarks/bench_fold.py --image-size 224 --batch-size 32 --repeats 10 --runs 3
    python benchmarks/bench_fold.py --image-size 32 --batch-size 2 --repeats 2 --runs 2 \
        --out /tmp/bench_fold.md  # smoke
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import Report, add_output_arguments, median, repeat, span  # noqa: E402

from bnkeras._timing import interleaved_times  # noqa: E402
from bnkeras.export import fold_batchnorm  # noqa: E402
from bnkeras.export.pipeline import export_model  # noqa: E402


def randomize_bn(model, rng):
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.moving_mean.shape
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels))
            layer.beta.assign(rng.normal(0, 0.1, channels))
            layer.moving_mean.assign(rng.normal(0, 0.1, channels))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


class NoOp(keras.layers.Layer):
    """Stands where a BN was: returns its input (mask-aware, unlike Identity)."""

    def call(self, x, mask=None):
        return x


def without_bn(model):
    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return NoOp(name=layer.name)
        config = layer.get_config()
        if "use_bias" in config:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    return keras.models.clone_model(model, clone_function=clone)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=10)
    add_output_arguments(parser, "bench_fold")
    args = parser.parse_args()
    report = Report(args.out, args.runs)
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    shape = (args.image_size, args.image_size, 3)
    model = keras.applications.ResNet50(input_shape=shape, weights=None)
    randomize_bn(model, rng)
    start = time.perf_counter()
    folded = fold_batchnorm(model).model
    fold_seconds = time.perf_counter() - start
    models = {
        "unfolded (BN)": model,
        "folded (bnkeras)": folded,
        "no BN (limit)": without_bn(model),
    }
    x = rng.normal(size=(args.batch_size, *shape)).astype("float32")
    runs = {name: tf.function(lambda t, m=m: m(t, training=False)) for name, m in models.items()}
    outputs = {name: run(x).numpy() for name, run in runs.items()}
    candidates = {name: (lambda run=run: run(x).numpy()) for name, run in runs.items()}
    reference = outputs["unfolded (BN)"].astype(np.float64)
    diff = np.abs(outputs["folded (bnkeras)"] - reference)

    def measure():
        times = interleaved_times(candidates, args.repeats, warmup=0)
        medians = {name: float(np.median(t)) for name, t in times.items()}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "resnet50.keras"
            model.save(path)
            start = time.perf_counter()
            result = export_model(path, Path(tmp) / "export", batch_size=8)
            seconds = time.perf_counter() - start
        return medians, seconds, result.passed

    results = repeat(args.runs, measure)
    lines = ["| model | ms | speed-up vs unfolded |", "|---|---:|---:|"]
    for name in models:
        ms = median([medians[name] for medians, _, _ in results]) * 1e3
        speedup = span([m["unfolded (BN)"] / m[name] for m, _, _ in results])
        lines.append(f"| {name} | {ms:.0f} | {speedup} |")
    limit = span([m["folded (bnkeras)"] / m["no BN (limit)"] for m, _, _ in results], 3)
    export_s = span([seconds for _, seconds, _ in results], 0, " s")
    passed = "passed" if all(ok for _, _, ok in results) else "FAILED"
    which = "range over the runs" if args.runs > 1 else "one run"
    report.write(
        f"keras.applications ResNet50 inference, {args.image_size}x{args.image_size}, batch "
        f"{args.batch_size}, random weights and BN statistics (TensorFlow backend): "
        f"milliseconds (median over the runs of each run's median of {args.repeats} "
        f"interleaved calls) and the speed-up over the unfolded model ({which}).",
        "\n".join(lines)
        + f"\n\nfolded vs no BN: {limit}; fold took {fold_seconds:.1f} s; max \\|folded - "
        f"unfolded\\| = {diff.max():.2e} (relative "
        f"{(diff / np.maximum(np.abs(reference), 1e-12)).max():.1e})\n\n"
        f"`bnkeras export` of ResNet50 (load, fold, .keras + SavedModel + ONNX, verify each, "
        f"batch 8): {export_s} ({which}), verification {passed}",
    )


if __name__ == "__main__":
    main()
