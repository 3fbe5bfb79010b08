"""Model speed: CIFAR ResNet-20 training throughput with bnkeras BN, Keras BN and no BN.

The same network (bnkeras.training.models.resnet_cifar) is built with each norm and
compiled the same way (SGD with momentum, no XLA); the models then train in turn,
interleaved, on the same batches, and the table shows the median images per second
and the ratio to Keras BN. "none" is the same network without BN (its convs get a
bias): the limit for any BN implementation.

    python benchmarks/bench_resnet.py --batch-size 128 --rounds 8 --steps 5
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from bnkeras.training.models.resnet_cifar import cifar_resnet  # noqa: E402

NORMS = {"keras BN": "keras", "bnkeras BN": "bn", "bnkeras ghost (vbs 32)": "ghost", "none": "none"}


def build(norm, batch_size):
    keras.utils.set_random_seed(0)
    model = cifar_resnet(20, norm=norm, virtual_batch_size=32)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=False,
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=5, help="training steps per model per round")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.batch_size, 32, 32, 3)).astype("float32")
    y = rng.integers(0, 10, size=(args.batch_size,))
    models = {name: build(norm, args.batch_size) for name, norm in NORMS.items()}
    for model in models.values():  # trace and warm up
        for _ in range(2):
            model.train_on_batch(x, y)
    rates = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(args.steps):
                model.train_on_batch(x, y)
            rates[name].append(args.batch_size * args.steps / (time.perf_counter() - start))
    print(
        f"ResNet-20 training throughput, batch {args.batch_size}, 32x32x3: TensorFlow "
        f"{tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; medians of {args.rounds} rounds x {args.steps} steps\n"
    )
    print("| norm | images/s | vs Keras BN |")
    print("|---|---:|---:|")
    base = np.median(rates["keras BN"])
    for name, values in rates.items():
        print(f"| {name} | {np.median(values):.0f} | {np.median(values) / base:.2f}x |")


if __name__ == "__main__":
    main()
