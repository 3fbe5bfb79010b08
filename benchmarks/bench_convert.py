"""A converted real backbone: keras.applications models with Keras BN against the same
models converted to bnkeras BN (`bnkeras.convert_batchnorm`), training steps side by side.

Each model is built once with Keras's `BatchNormalization` (weights=None, 10 classes) and
converted with `convert_batchnorm(model, "bn")`; both are compiled the same way (SGD with
momentum, graph mode, and with `--xla` also jit_compile=True, Keras's default on a GPU), traced and
warmed up, then timed in interleaved rounds (a fresh random order every round) on the same
batch. The table shows the median seconds per training step and the median of the
round-by-round ratios Keras BN / bnkeras BN (> 1: bnkeras is faster): with one run, with its
interquartile range; with `--runs N` (the whole measurement repeated N times after one
warm-up), its range over the runs. The results go to stdout and to `--out` (default
docs/benchmarks/convert.md, which the documentation includes) through
benchmarks/_common.py: machine, versions, date, load and the command line.

    python benchmarks/bench_convert.py --models ResNet50,MobileNetV2 --sizes 224,128 --runs 3
    python benchmarks/bench_convert.py --models MobileNetV2 --sizes 32 --batch-size 4 \
        --rounds 2 --steps 1 --runs 2 --out /tmp/convert.md  # smoke
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import (  # noqa: E402
    Report,
    add_output_arguments,
    compile_for_training,
    median,
    repeat,
    span,
)

import bnkeras  # noqa: E402
from bnkeras._timing import interleaved_times, paired_ratio  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ResNet50,MobileNetV2")
    parser.add_argument("--sizes", default="224,128", help="input sizes (square)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="steps per model per round")
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True")
    add_output_arguments(parser, "convert")
    args = parser.parse_args()
    report = Report(args.out, args.runs)
    rng = np.random.default_rng(0)
    rows = []
    modes = [False, True] if args.xla else [False]
    for name in args.models.split(","):
        for size in map(int, args.sizes.split(",")):
            keras.backend.clear_session()
            keras.utils.set_random_seed(0)
            builder = getattr(keras.applications, name)
            x = rng.normal(size=(args.batch_size, size, size, 3)).astype("float32")
            y = rng.integers(0, 10, size=(args.batch_size,))
            for jit in modes:
                base = builder(
                    input_shape=(size, size, 3),
                    weights=None,
                    classes=10,
                    classifier_activation=None,  # logits, as the loss reads them
                )
                models = {
                    "keras BN": compile_for_training(base, jit),
                    "bnkeras BN": compile_for_training(bnkeras.convert_batchnorm(base, "bn"), jit),
                }
                for model in models.values():  # trace and warm up
                    for _ in range(2):
                        model.train_on_batch(x, y)

                def steps(model, x=x, y=y):
                    for _ in range(args.steps):
                        model.train_on_batch(x, y)

                def measure(models=models, steps=steps):
                    times = interleaved_times(
                        {k: (lambda m=m: steps(m)) for k, m in models.items()},
                        args.rounds,
                        warmup=0,
                    )
                    return times, paired_ratio(times["keras BN"], times["bnkeras BN"])

                runs = repeat(args.runs, measure)
                per_step = {
                    k: median([float(np.median(times[k])) for times, _ in runs]) / args.steps
                    for k in models
                }
                if args.runs == 1:
                    ratio, (low, high) = runs[0][1]
                    ratio_text = f"{ratio:.2f}x (IQR {low:.2f}-{high:.2f})"
                else:
                    ratio_text = span([ratio for _, (ratio, _) in runs])
                rows.append(
                    f"| {name} | {size} | {'xla' if jit else 'graph'} | "
                    f"{per_step['keras BN']:.3f} | {per_step['bnkeras BN']:.3f} | {ratio_text} |"
                )
                print(rows[-1], flush=True)
    which = "its range over the runs" if args.runs > 1 else "its interquartile range"
    table = [
        "| model | size | mode | Keras BN s/step | bnkeras BN s/step | Keras / bnkeras |",
        "|---|---:|---|---:|---:|---:|",
        *rows,
    ]
    report.write(
        f"keras.applications training steps, batch {args.batch_size}, Keras BN vs the same "
        f"model converted to bnkeras BN (TensorFlow backend): seconds per step (median over "
        f"the runs of each run's median of {args.rounds} interleaved rounds x {args.steps} "
        f"steps) and the median round-by-round ratio Keras / bnkeras with {which}.",
        "\n".join(table),
    )


if __name__ == "__main__":
    main()
