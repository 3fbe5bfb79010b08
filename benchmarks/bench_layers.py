"""Layer speed: bnkeras's BN family against TensorFlow's fused kernel, Keras 3 and tf.keras.

Every candidate runs side by side in this one process, interleaved (one call of
each per round, in a fresh random order every round; inference gets 3x the
rounds), and the table shows medians and each one's ratio to the raw fused kernel (`tf.raw_ops.FusedBatchNormV3`, the floor). A training step is
forward + backward: the gradients with respect to the input, gamma and beta, fed
the output gradient directly, so no loss computation is timed. Rows for tf.keras
appear when the `tf-keras` package is installed.

    python benchmarks/bench_layers.py                  # the three shapes of the issue
    python benchmarks/bench_layers.py --shapes 64,32,32,64 --repeats 30
"""

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import bnkeras  # noqa: E402

try:
    import tf_keras
except ImportError:  # optional comparison
    tf_keras = None

VIRTUAL_BATCH = 16
CLIP = {"rmax": 3.0, "dmax": 5.0}


class RawFused:
    """The floor: the bare kernel with its own gamma/beta variables."""

    def __init__(self, channels):
        self.trainable_weights = [tf.Variable(tf.ones(channels)), tf.Variable(tf.zeros(channels))]
        self.mean = tf.zeros(channels)
        self.variance = tf.ones(channels)

    def __call__(self, x, training):
        gamma, beta = self.trainable_weights
        empty = tf.zeros([0])
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x,
            scale=gamma,
            offset=beta,
            mean=empty if training else self.mean,
            variance=empty if training else self.variance,
            epsilon=1e-3,
            exponential_avg_factor=1.0,
            is_training=training,
        )
        return y


def candidates(channels, axis=-1):
    rows = {"fused kernel (floor)": RawFused(channels)} if axis == -1 else {}
    rows["keras BN"] = keras.layers.BatchNormalization(axis=axis)
    if axis == -1:
        rows["keras renorm"] = keras.layers.BatchNormalization(
            renorm=True, renorm_clipping={"rmin": 1 / 3.0, **CLIP}
        )
        if tf_keras is not None:
            rows["tf.keras BN (fused)"] = tf_keras.layers.BatchNormalization(fused=True)
            rows["tf.keras renorm"] = tf_keras.layers.BatchNormalization(
                renorm=True, renorm_clipping={"rmin": 1 / 3.0, **CLIP}
            )
            rows[f"tf.keras ghost (vbs {VIRTUAL_BATCH})"] = tf_keras.layers.BatchNormalization(
                virtual_batch_size=VIRTUAL_BATCH
            )
    rows["bnkeras BN"] = bnkeras.BatchNormalization(axis=axis)
    if axis == -1:
        rows["bnkeras renorm"] = bnkeras.BatchRenormalization(**CLIP)
        rows[f"bnkeras ghost (vbs {VIRTUAL_BATCH})"] = bnkeras.GhostBatchNormalization(
            VIRTUAL_BATCH
        )
        rows[f"bnkeras ghost (vbs {VIRTUAL_BATCH}, dynamic batch)"] = (
            bnkeras.GhostBatchNormalization(VIRTUAL_BATCH),
            "dynamic",
        )
    return rows


def make_steps(layer, shape, dynamic):
    spec = tf.TensorSpec((None, *shape[1:]) if dynamic else shape)

    @tf.function(input_signature=[spec, spec])
    def train(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        return tape.gradient(y, [x, *layer.trainable_weights], output_gradients=dy)

    @tf.function(input_signature=[spec])
    def infer(x):
        return layer(x, training=False)

    return train, infer


def measure(shape, repeats, axis=-1, only=""):
    channels = shape[axis]
    x = tf.random.normal(shape, 1.0, 2.0)
    dy = tf.random.normal(shape)
    steps = {}
    for name, entry in candidates(channels, axis).items():
        if only and only not in name and "floor" not in name and name != "keras BN":
            continue
        layer, mode = entry if isinstance(entry, tuple) else (entry, "static")
        if hasattr(layer, "build") and not layer.built:
            layer.build(shape)
        steps[name] = make_steps(layer, shape, mode == "dynamic")
    results = {}
    order = np.random.default_rng(0)
    # Inference calls are short, so they get more rounds; every round runs the
    # candidates in a new random order, so no one always follows the same neighbour.
    for phase, index, args, rounds in (
        ("train", 0, (x, dy), repeats),
        ("infer", 1, (x,), 3 * repeats),
    ):
        times = {name: [] for name in steps}
        for fns in steps.values():  # warm up: trace and run twice
            for _ in range(2):
                _block(fns[index](*args))
        names = list(steps)
        for _ in range(rounds):
            for name in order.permutation(names):
                start = time.perf_counter()
                _block(steps[name][index](*args))
                times[name].append(time.perf_counter() - start)
        results[phase] = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    return results


def _block(result):
    first = result[0] if isinstance(result, (list, tuple)) else result
    first.numpy()


def print_table(shape, results, floor):
    print(f"\n### {shape} ({'NHWC' if floor else 'NCHW'})\n")
    reference = "fused kernel (floor)" if floor else "keras BN"
    print(
        f"| layer | train ms | train / {'floor' if floor else 'keras'} | infer ms | infer / {'floor' if floor else 'keras'} |"
    )
    print("|---|---:|---:|---:|---:|")
    for name in results["train"]:
        train, infer = results["train"][name], results["infer"][name]
        print(
            f"| {name} | {train:.2f} | {train / results['train'][reference]:.2f}x "
            f"| {infer:.2f} | {infer / results['infer'][reference]:.2f}x |"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", nargs="*", default=["64,32,32,64", "256,14,14,256", "32,112,112,64"]
    )
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--only", default="", help="keep only the rows whose name contains this")
    parser.add_argument(
        "--channels-first", default="64,64,32,32", help="NCHW shape for axis=1 ('' to skip)"
    )
    args = parser.parse_args()
    print(
        f"bnkeras layer benchmark: TensorFlow {tf.__version__}, Keras {keras.__version__}, "
        f"tf-keras {getattr(tf_keras, '__version__', 'not installed')}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}); medians of {args.repeats}"
    )
    for text in args.shapes:
        shape = tuple(int(v) for v in text.split(","))
        print_table(shape, measure(shape, args.repeats, only=args.only), floor=True)
    if args.channels_first:
        shape = tuple(int(v) for v in args.channels_first.split(","))
        print_table(shape, measure(shape, args.repeats, axis=1), floor=False)


if __name__ == "__main__":
    main()
