"""Model speed: CIFAR ResNet-20 training throughput with bnkeras BN, Keras BN and no BN.

The same network (bnkeras.training.models.resnet_cifar) is built with each norm and each
compile mode (`graph`: tf.function without XLA; `xla`: jit_compile=True, what Keras picks by
default on a GPU; `bf16`: the mixed_bfloat16 policy without XLA; `fp16`: mixed_float16), all
compiled the same way (SGD with momentum); the models then train in turn, interleaved in a
fresh random order every round, on the same batches, and the table shows the median images per
second and the ratio to Keras BN in graph mode. "bare fused kernel" calls only TensorFlow's
fused kernel (no moving statistics): the ceiling for a BN built on that kernel. "none" is the
same network without BN (its convs get a bias). The script runs unchanged on a GPU. With
`--runs N` the whole measurement is repeated N times (after one trace) and the ratios show
their range over the runs. The table goes to stdout and to `--out` (default
docs/benchmarks/bench_resnet.md, which the docs include) through benchmarks/_common.py:
machine, versions, date, load and the command line.

    python benchmarks/bench_resnet.py --batch-size 128 --rounds 8 --steps 5 --modes graph,xla,bf16 --runs 3
    python benchmarks/bench_resnet.py --batch-size 32 --rounds 2 --steps 1 --modes graph,bf16 \
        --runs 2 --out /tmp/bench_resnet.md  # smoke
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import (  # noqa: E402
    Report,
    add_output_arguments,
    compile_for_training,
    median,
    repeat,
    span,
)

from bnkeras._timing import interleaved_times  # noqa: E402
from bnkeras.training.models.resnet_cifar import cifar_resnet  # noqa: E402


class BareFusedKernel(keras.layers.Layer):
    """Only tf.raw_ops.FusedBatchNormV3 in training mode: no moving statistics, no
    inference mode. The ceiling for any BN layer built on the fused kernel."""

    def __init__(self, gamma_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        self.gamma_initializer = gamma_initializer

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.gamma = self.add_weight(shape=channels, initializer=self.gamma_initializer)
        self.beta = self.add_weight(shape=channels, initializer="zeros")

    def call(self, x, training=None):
        empty = tf.zeros([0])
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=tf.cast(self.gamma, "float32"),
            offset=tf.cast(self.beta, "float32"),
            mean=empty,
            variance=empty,
            epsilon=1e-3,
            exponential_avg_factor=1.0,
            is_training=True,
        )
        return y


NORMS = {
    "keras BN": "keras",
    "bnkeras BN": "bn",
    "bnkeras ghost (vbs 32)": "ghost",
    "bare fused kernel (ceiling)": BareFusedKernel,
    "none": "none",
}


MODES = {  # name: (dtype policy, jit_compile)
    "graph": ("float32", False),
    "xla": ("float32", True),
    "bf16": ("mixed_bfloat16", False),
    "fp16": ("mixed_float16", False),
}


def build(norm, mode):
    policy, jit_compile = MODES[mode]
    keras.utils.set_random_seed(0)
    keras.config.set_dtype_policy(policy)
    try:
        options = {"virtual_batch_size": 32} if norm == "ghost" else {}
        model = cifar_resnet(20, norm=norm, **options)
    finally:
        keras.config.set_dtype_policy("float32")
    return compile_for_training(model, jit_compile)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="training steps per model per round")
    parser.add_argument(
        "--modes",
        default="graph,xla,bf16",
        help=f"comma-separated compile modes among {', '.join(MODES)} (default graph,xla,bf16)",
    )
    parser.add_argument(
        "--norms",
        default=",".join(NORMS),
        help=f"comma-separated norms among: {', '.join(NORMS)}",
    )
    add_output_arguments(parser, "bench_resnet")
    args = parser.parse_args()
    modes = args.modes.split(",")
    norms = args.norms.split(",")
    if unknown := [m for m in modes if m not in MODES] + [n for n in norms if n not in NORMS]:
        parser.error(f"unknown mode or norm: {', '.join(unknown)}")
    report = Report(args.out, args.runs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch_size,))
    models = {(n, m): build(NORMS[n], m) for m in modes for n in norms}
    for model in models.values():  # trace and warm up
        for _ in range(2):
            model.train_on_batch(x, y)

    def steps(model):
        for _ in range(args.steps):
            model.train_on_batch(x, y)

    candidates = {name: (lambda model=model: steps(model)) for name, model in models.items()}

    def measure():
        times = interleaved_times(candidates, args.rounds, warmup=0)
        return {
            k: float(np.median(args.batch_size * args.steps / np.asarray(t)))
            for k, t in times.items()
        }

    runs = repeat(args.runs, measure)
    base_key = ("keras BN", "graph")
    lines = ["| norm | mode | images/s | vs Keras BN (graph) |", "|---|---|---:|---:|"]
    for name, mode in models:
        rate = median([run[(name, mode)] for run in runs])
        ratio = (
            span([run[(name, mode)] / run[base_key] for run in runs]) if base_key in models else "-"
        )
        lines.append(f"| {name} | {mode} | {rate:.0f} | {ratio} |")
    which = "range over the runs" if args.runs > 1 else "one run"
    report.write(
        f"CIFAR ResNet-20 training throughput, batch {args.batch_size}, 32x32x3 (TensorFlow "
        f"backend): images/s (median over the runs of each run's median of {args.rounds} "
        f"interleaved rounds x {args.steps} steps) and the ratio to Keras BN in graph mode "
        f"({which}).",
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
