"""Layer speed: bnkeras's BN family against TensorFlow's fused kernel, Keras 3 and tf.keras.

Every candidate runs side by side in this one process, interleaved (one call of
each per round, in a fresh random order every round; inference gets 3x the
rounds), and the table shows medians and each one's ratio to the raw fused kernel
(`tf.raw_ops.FusedBatchNormV3`, the floor). A training step is
forward + backward: the output and the gradients with respect to the input, gamma
and beta, fed the output gradient directly, so no loss computation is timed. Rows for tf.keras
appear when the `tf-keras` package is installed.

Rows marked `[XLA]` run the same step under `tf.function(jit_compile=True)`; their
ratios are to the same fused-kernel floor without XLA, and the `fused kernel (floor)
[XLA]` row is XLA's own BN. The script runs unchanged on a GPU (the file names the device);
`--mixed-precision float16|bfloat16` feeds half-precision inputs to layers under the
matching mixed policy. With `--runs N` the whole measurement is repeated N times (after one
trace) and the ratios show their range over the runs. The tables go to stdout and to
`--out` (default docs/benchmarks/bench_layers.md, which the docs include) through
benchmarks/_common.py: machine, versions, date, load and the command line.

    python benchmarks/bench_layers.py --repeats 30 --runs 3   # the three NHWC shapes and one NCHW
    python benchmarks/bench_layers.py --shapes 64,32,32,64 --repeats 30 --runs 4
    python benchmarks/bench_layers.py --mixed-precision bfloat16 --no-xla --out /tmp/bf16.md
    python benchmarks/bench_layers.py --shapes 32,8,8,16 --channels-first 8,16,8,8 \
        --repeats 2 --runs 2 --out /tmp/bench_layers.md  # smoke
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _common import Report, add_output_arguments, median, repeat, span  # noqa: E402

import bnkeras  # noqa: E402
from bnkeras._timing import interleaved_times  # noqa: E402

try:
    import tf_keras
except ImportError:  # optional comparison
    tf_keras = None

VIRTUAL_BATCH = 16
DTYPE = tf.float32  # of the inputs; --mixed-precision sets a half type
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


def candidates(channels, axis=-1, xla=True):
    """{row name: (layer, dynamic batch, jit_compile)}."""
    last = axis == -1
    rows = {"fused kernel (floor)": RawFused(channels)} if last else {}
    rows["keras BN"] = keras.layers.BatchNormalization(axis=axis)
    if last:
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
    rows = {name: (layer, False, False) for name, layer in rows.items()}
    bnkeras_rows = {"bnkeras BN": (lambda: bnkeras.BatchNormalization(axis=axis), False)}
    if last:
        ghost = f"bnkeras ghost (vbs {VIRTUAL_BATCH})"
        bnkeras_rows["bnkeras renorm"] = (lambda: bnkeras.BatchRenormalization(**CLIP), False)
        bnkeras_rows[ghost] = (lambda: bnkeras.GhostBatchNormalization(VIRTUAL_BATCH), False)
        bnkeras_rows[f"{ghost[:-1]}, dynamic batch)"] = (
            lambda: bnkeras.GhostBatchNormalization(VIRTUAL_BATCH),
            True,
        )
    rows.update({name: (make(), dynamic, False) for name, (make, dynamic) in bnkeras_rows.items()})
    if xla:
        if last:
            rows["fused kernel (floor) [XLA]"] = (RawFused(channels), False, True)
        rows["keras BN [XLA]"] = (keras.layers.BatchNormalization(axis=axis), False, True)
        for name, (make, dynamic) in bnkeras_rows.items():
            rows[f"{name} [XLA]"] = (make(), dynamic, True)
    return rows


def make_steps(layer, shape, dynamic, jit_compile):
    spec = tf.TensorSpec((None, *shape[1:]) if dynamic else shape, DTYPE)

    @tf.function(input_signature=[spec, spec], jit_compile=jit_compile)
    def train(x, dy):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
        grads = tape.gradient(y, [x, *layer.trainable_weights], output_gradients=dy)
        # The whole output is returned too, as a network would consume it: without it,
        # pruning (and XLA) drops whatever part of the forward pass the gradients do not need.
        return [y, *grads]

    @tf.function(input_signature=[spec], jit_compile=jit_compile)
    def infer(x):
        return layer(x, training=False)  # whole: XLA computes only what is returned

    return train, infer


def build(shape, axis=-1, only="", xla=True):
    """(steps, x, dy): {row name: (train, infer)} traced for `shape`, and the inputs."""
    channels = shape[axis]
    x = tf.cast(tf.random.normal(shape, 1.0, 2.0), DTYPE)
    dy = tf.cast(tf.random.normal(shape), DTYPE)
    steps = {}
    for name, (layer, dynamic, jit_compile) in candidates(channels, axis, xla).items():
        if only and only not in name and "floor" not in name and "keras BN" not in name:
            continue
        if hasattr(layer, "build") and not layer.built:
            layer.build(shape)
        steps[name] = make_steps(layer, shape, dynamic, jit_compile)
    return steps, x, dy


def measure(steps, x, dy, repeats):
    """{"train"|"infer": {row name: median ms}}: one whole measurement."""
    results = {}
    # Inference calls are short, so they get more rounds; every round runs the
    # candidates in a new random order, so no one always follows the same neighbour.
    for seed, (phase, index, args, rounds) in enumerate(
        (("train", 0, (x, dy), repeats), ("infer", 1, (x,), 3 * repeats))
    ):
        calls = {
            name: (lambda fn=fns[index], a=args: _block(fn(*a))) for name, fns in steps.items()
        }
        times = interleaved_times(calls, rounds, warmup=2, seed=seed)
        results[phase] = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    return results


def _block(result):
    # Waits for the step by fetching one element of its output (an eager slice after
    # the call, which also waits for a GPU): `.numpy()` of a whole activation would add
    # a copy of it to every timed call (and pull every ratio towards 1).
    first = result[0] if isinstance(result, (list, tuple)) else result
    first[(0,) * first.shape.rank].numpy()


def table(shape, runs, floor):
    """The markdown table of one shape from its runs (each `measure`'s result)."""
    reference = "fused kernel (floor)" if floor else "keras BN"
    against = "floor" if floor else "keras"
    lines = [
        f"**{shape} ({'NHWC' if floor else 'NCHW'}, {DTYPE.name} inputs)**",
        "",
        f"| layer | train ms | train / {against} | infer ms | infer / {against} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in runs[0]["train"]:
        cells = []
        for phase in ("train", "infer"):
            cells.append(f"{median([r[phase][name] for r in runs]):.2f}")
            cells.append(span([r[phase][name] / r[phase][reference] for r in runs]))
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines)


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
    parser.add_argument(
        "--mixed-precision",
        choices=["float16", "bfloat16"],
        help="half-precision inputs, layers under the mixed_<type> policy",
    )
    parser.add_argument("--no-xla", action="store_true", help="skip the [XLA] rows")
    add_output_arguments(parser, "bench_layers")
    args = parser.parse_args()
    global DTYPE
    if args.mixed_precision:
        DTYPE = tf.as_dtype(args.mixed_precision)
        keras.mixed_precision.set_global_policy(f"mixed_{args.mixed_precision}")
    report = Report(args.out, args.runs)
    xla = not args.no_xla
    shapes = [(tuple(int(v) for v in text.split(",")), -1) for text in args.shapes]
    if args.channels_first:
        shapes.append((tuple(int(v) for v in args.channels_first.split(",")), 1))
    built = [
        (shape, axis, build(shape, axis, args.only if axis == -1 else "", xla))
        for shape, axis in shapes
    ]
    runs = repeat(args.runs, lambda: [measure(*steps, args.repeats) for _, _, steps in built])
    tables = [
        table(shape, [run[i] for run in runs], floor=axis == -1)
        for i, (shape, axis, _) in enumerate(built)
    ]
    which = "range over the runs" if args.runs > 1 else "one run"
    report.write(
        f"BN layer steps against TensorFlow's fused kernel: milliseconds (median over the runs "
        f"of each run's median of {args.repeats} training steps and {3 * args.repeats} "
        f"inference calls, interleaved) and the ratio to the reference row ({which}); "
        f"tf-keras {getattr(tf_keras, '__version__', 'not installed')}.",
        "\n\n".join(tables),
    )


if __name__ == "__main__":
    main()
