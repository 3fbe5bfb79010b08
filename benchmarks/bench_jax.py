"""Speed on Keras's JAX backend: bnkeras BN, renorm and ghost BN against Keras's own BN.

Two measurements, each with the candidates interleaved in one process (a fresh random
order every round) on the same batch:

- a layer training step (forward and backward of one norm layer on a (64, 32, 32, 64)
  activation, a `jax.jit`-compiled `fit` step of a one-layer model with an MSE loss);
- a CIFAR ResNet-20 training step (batch 128, 32x32x3, SGD with momentum), the network
  of `bnkeras.training.models.resnet_cifar` with each norm injected.

Keras BN runs with `renorm=False` and `renorm=True`. The table shows the median
milliseconds per step and the ratio to Keras BN (renorm=False); with `--runs N` the whole
measurement is repeated N times (after one compile) and the ratios show their range over
the runs. The results go to stdout and to `--out` (default docs/benchmarks/bench_jax.md,
which the docs include) through benchmarks/_common.py: machine, versions, date, load and
the command line.

    python benchmarks/bench_jax.py --runs 4
    python benchmarks/bench_jax.py --rounds 2 --steps 1 --batch 32 --runs 2 --out /tmp/bench_jax.md  # smoke
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported

import argparse  # noqa: E402
import functools  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _common import Report, add_output_arguments, median, repeat, span  # noqa: E402

import bnkeras  # noqa: E402
from bnkeras._timing import interleaved_times  # noqa: E402
from bnkeras.training.models.resnet_cifar import cifar_resnet  # noqa: E402

NORMS = {  # layer makers: make(name=..., **options) as the models call them
    "keras BN": keras.layers.BatchNormalization,
    "keras BN renorm=True": functools.partial(keras.layers.BatchNormalization, renorm=True),
    "bnkeras BN": bnkeras.BatchNormalization,
    "bnkeras renorm": functools.partial(bnkeras.BatchRenormalization, total_steps=1000),
    "bnkeras ghost (vbs 32)": functools.partial(
        bnkeras.GhostBatchNormalization, virtual_batch_size=32
    ),
}


def layer_model(make, shape):
    model = keras.Sequential([keras.Input(shape[1:]), make()])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse", jit_compile=True)
    return model


def resnet_model(make):
    keras.utils.set_random_seed(0)
    model = cifar_resnet(20, norm=make)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    return model


def warm_up(models, x, y):
    for model in models.values():  # compile and warm up
        for _ in range(2):
            model.train_on_batch(x, y)


def timed(models, x, y, rounds, steps):
    """{norm: median seconds per step} over `rounds` interleaved rounds."""

    def run(model):
        for _ in range(steps):
            model.train_on_batch(x, y)

    times = interleaved_times(
        {k: (lambda m=m: run(m)) for k, m in models.items()}, rounds, warmup=0
    )
    return {k: float(np.median(v)) / steps for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per run")
    parser.add_argument("--steps", type=int, default=3, help="steps per model per round")
    parser.add_argument(
        "--batch", type=int, default=128, help="ResNet-20 batch (the layer step's is 64)"
    )
    add_output_arguments(parser, "bench_jax")
    args = parser.parse_args()
    report = Report(args.out, args.runs)
    rng = np.random.default_rng(0)
    shape = (64, 32, 32, 64)
    x = rng.normal(1.5, 2.0, shape).astype("float32")
    images = rng.normal(size=(args.batch, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(args.batch,))
    layers = {k: layer_model(m, shape) for k, m in NORMS.items()}
    resnets = {k: resnet_model(m) for k, m in NORMS.items()}
    warm_up(layers, x, x)
    warm_up(resnets, images, labels)
    runs = repeat(
        args.runs,
        lambda: (
            timed(layers, x, x, args.rounds, args.steps),
            timed(resnets, images, labels, args.rounds, args.steps),
        ),
    )
    rows = []
    for k in NORMS:
        layer_ms = median([layer[k] for layer, _ in runs]) * 1e3
        resnet_ms = median([resnet[k] for _, resnet in runs]) * 1e3
        layer_ratio = span([layer[k] / layer["keras BN"] for layer, _ in runs])
        resnet_ratio = span([resnet[k] / resnet["keras BN"] for _, resnet in runs])
        rows.append(f"| {k} | {layer_ms:.1f} | {layer_ratio} | {resnet_ms:.0f} | {resnet_ratio} |")
    which = "range over the runs" if args.runs > 1 else "one run"
    report.write(
        f"Keras's JAX backend (JAX {jax.__version__}), jit-compiled training steps: "
        f"milliseconds per step (median over the runs of each run's median of {args.rounds} "
        f"interleaved rounds x {args.steps} steps) and the ratio to Keras BN ({which}).",
        f"| norm | layer step ms (64,32,32,64) | vs Keras BN | ResNet-20 step ms (batch "
        f"{args.batch}) | vs Keras BN |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows),
    )


if __name__ == "__main__":
    main()
