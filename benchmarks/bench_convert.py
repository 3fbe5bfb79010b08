"""A converted real backbone: keras.applications models with Keras BN against the same
models converted to bnkeras BN (`bnkeras.convert_batchnorm`), training steps side by side.

Each model is built once with Keras's `BatchNormalization` (weights=None, 10 classes) and
converted with `convert_batchnorm(model, "bn")`; both are compiled the same way (SGD with
momentum, graph mode, and with `--xla` also jit_compile=True, Keras's default on a GPU), traced and
warmed up, then timed in interleaved rounds (a fresh random order every round) on the same
batch. The table shows the median seconds per training step and the median of the
round-by-round ratios Keras BN / bnkeras BN with its interquartile range (> 1: bnkeras is
faster). The results go to stdout and to `--out` (markdown with the machine, the versions,
the date and the load), which the documentation includes.

    python benchmarks/bench_convert.py --models ResNet50,MobileNetV2 --sizes 224,128
"""

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import compile_for_training, device  # noqa: E402

import bnkeras  # noqa: E402
from bnkeras._timing import interleaved_times, paired_ratio  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "convert.md"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ResNet50,MobileNetV2")
    parser.add_argument("--sizes", default="224,128", help="input sizes (square)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=2, help="steps per model per round")
    parser.add_argument("--xla", action="store_true", help="also time jit_compile=True")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown output file")
    args = parser.parse_args()
    load_before = os.getloadavg()
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

                times = interleaved_times(
                    {k: (lambda m=m: steps(m)) for k, m in models.items()}, args.rounds, warmup=0
                )
                ratio, (low, high) = paired_ratio(times["keras BN"], times["bnkeras BN"])
                per_step = {k: np.median(v) / args.steps for k, v in times.items()}
                rows.append(
                    f"| {name} | {size} | {'xla' if jit else 'graph'} | "
                    f"{per_step['keras BN']:.3f} | {per_step['bnkeras BN']:.3f} | "
                    f"{ratio:.2f}x ({low:.2f}-{high:.2f}) |"
                )
                print(rows[-1], flush=True)
    load_after = os.getloadavg()
    header = (
        f"keras.applications training steps, batch {args.batch_size}, Keras BN vs the same "
        f"model converted to bnkeras BN, on {device()}; TensorFlow {tf.__version__}, Keras "
        f"{keras.__version__}, Python {platform.python_version()}; "
        f"{datetime.date.today().isoformat()}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; medians of {args.rounds} interleaved rounds x "
        f"{args.steps} steps.\n\n"
        f"Command: `python benchmarks/bench_convert.py {' '.join(sys.argv[1:])}`\n"
    )
    table = [
        "| model | size | mode | Keras BN s/step | bnkeras BN s/step | Keras / bnkeras (IQR) |",
        "|---|---:|---|---:|---:|---:|",
        *rows,
    ]
    text = header + "\n" + "\n".join(table) + "\n"
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
