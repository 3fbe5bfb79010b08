"""Speed on Keras's JAX backend: bnkeras BN, renorm and ghost BN against Keras's own BN.

Two measurements, each with the candidates interleaved in one process (a fresh random
order every round) on the same batch:

- a layer training step (forward and backward of one norm layer on a (64, 32, 32, 64)
  activation, a `jax.jit`-compiled `fit` step of a one-layer model with an MSE loss);
- a CIFAR ResNet-20 training step (batch 128, 32x32x3, SGD with momentum), the network
  of `bnkeras.training.models.resnet_cifar` with each norm injected.

Keras BN runs with `renorm=False` and `renorm=True`. The table shows the median seconds
per step and the ratio to Keras BN (renorm=False). Results go to stdout and to `--out`
(markdown with the machine, the versions, the date and the load), which the docs include.

    python benchmarks/bench_jax.py
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported

import argparse  # noqa: E402
import datetime  # noqa: E402
import functools  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

import bnkeras  # noqa: E402
from bnkeras._timing import interleaved_times  # noqa: E402
from bnkeras.training.models.resnet_cifar import cifar_resnet  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "bench_jax.md"

NORMS = {  # layer makers: make(name=..., **options) as the models call them
    "keras BN": keras.layers.BatchNormalization,
    "keras BN renorm=True": functools.partial(keras.layers.BatchNormalization, renorm=True),
    "bnkeras BN": bnkeras.BatchNormalization,
    "bnkeras renorm": functools.partial(bnkeras.BatchRenormalization, total_steps=1000),
    "bnkeras ghost (vbs 32)": functools.partial(
        bnkeras.GhostBatchNormalization, virtual_batch_size=32
    ),
}


def cpu_name():
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


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


def timed(models, x, y, rounds, steps):
    for model in models.values():  # compile and warm up
        for _ in range(2):
            model.train_on_batch(x, y)

    def run(model):
        for _ in range(steps):
            model.train_on_batch(x, y)

    times = interleaved_times(
        {k: (lambda m=m: run(m)) for k, m in models.items()}, rounds, warmup=0
    )
    return {k: float(np.median(v)) / steps for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rng = np.random.default_rng(0)
    shape = (64, 32, 32, 64)
    x = rng.normal(1.5, 2.0, shape).astype("float32")
    layer = timed(
        {k: layer_model(m, shape) for k, m in NORMS.items()}, x, x, args.rounds, args.steps
    )
    images = rng.normal(size=(128, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 10, size=(128,))
    resnet = timed(
        {k: resnet_model(m) for k, m in NORMS.items()}, images, labels, args.rounds, args.steps
    )
    load_after = os.getloadavg()
    rows = [
        f"| {k} | {layer[k] * 1e3:.1f} | {layer[k] / layer['keras BN']:.2f}x | "
        f"{resnet[k] * 1e3:.0f} | {resnet[k] / resnet['keras BN']:.2f}x |"
        for k in NORMS
    ]
    text = (
        f"Keras's JAX backend, jit-compiled training steps, on {jax.devices()[0].platform.upper()} "
        f"({cpu_name()}, {os.cpu_count()} cores); JAX {jax.__version__}, Keras "
        f"{keras.__version__}, Python {platform.python_version()}; "
        f"{datetime.date.today().isoformat()}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after; medians of {args.rounds} interleaved rounds x "
        f"{args.steps} steps.\n\n"
        f"Command: `python benchmarks/bench_jax.py {' '.join(sys.argv[1:])}`\n\n"
        "| norm | layer step ms (64,32,32,64) | vs Keras BN | ResNet-20 step ms (batch 128) "
        "| vs Keras BN |\n|---|---:|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
