"""Fast paths on TensorFlow's fused batch-norm kernel (`FusedBatchNormV3`).

Keras 3 composes BN from separate ops; the fused kernel normalizes, computes the
batch statistics and (in its gradient) the input, gamma and beta gradients in a
few passes over memory. It accepts 4-D NHWC and 5-D NDHWC inputs in float16,
bfloat16 or float32 with float32 statistics; `applies` says when a call can use it.
Everything else (other ranks and axes, masks, cross-replica statistics, float64)
takes the general path of `BatchNormBase`, which computes the same values.
"""

import tensorflow as tf

from bnkeras.layers._utils import replica_context_to_sync

_DATA_FORMATS = {4: "NHWC", 5: "NDHWC"}
_DTYPES = (tf.float16, tf.bfloat16, tf.float32)


def applies(layer, inputs, mask):
    """True when this call can run on the fused kernel."""
    return (
        mask is None
        and inputs.shape.rank in _DATA_FORMATS
        and layer._channel_axis == inputs.shape.rank - 1
        and inputs.dtype in _DTYPES
        and replica_context_to_sync(layer.synchronized) is None
    )


def _empty():
    return tf.zeros([0], tf.float32)


def train(x, scale, offset, epsilon):
    """Normalizes with batch statistics; returns (y, mean, variance).

    The kernel's `batch_variance` output is Bessel-corrected (n / (n - 1), for the
    moving average of tf.keras v1); Keras uses the population variance, so it is
    scaled back by (n - 1) / n (and is 0 for n == 1).
    """
    y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=scale,
        offset=offset,
        mean=_empty(),
        variance=_empty(),
        epsilon=epsilon,
        exponential_avg_factor=1.0,
        data_format=_DATA_FORMATS[x.shape.rank],
        is_training=True,
    )
    static = x.shape[:-1]
    if static.is_fully_defined():  # one constant multiply instead of five shape ops
        count = static.num_elements()
        return y, mean, variance * ((count - 1) / count if count > 1 else 0.0)
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    return y, mean, variance * tf.where(count > 1.0, (count - 1.0) / tf.maximum(count, 1.0), 0.0)


def infer(x, scale, offset, mean, variance, epsilon):
    y, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=x,
        scale=scale,
        offset=offset,
        mean=mean,
        variance=variance,
        epsilon=epsilon,
        data_format=_DATA_FORMATS[x.shape.rank],
        is_training=False,
    )
    return y


def moments(x, epsilon):
    """Per-channel population mean and variance of a channels-last tensor, no gradient.

    The statistics output of a fused training call (its normalized output is
    dropped; XLA removes it). Measured as fast on CPU as a matrix-vector product
    with per-example Euclidean norms (benchmarks/bench_layers.py, renorm rows), and
    unlike `reduce_euclidean_norm` it compiles under XLA.
    """
    x = tf.stop_gradient(x)
    channels = x.shape[-1]
    _, mean, variance = train(x, tf.ones([channels]), tf.zeros([channels]), epsilon)
    return mean, variance


def train_ghost_batches(x, size, scale, offset, epsilon):
    """Ghost BN of a batch of whole ghost batches in ONE fused call; (y, mean, variance).

    The ghost batches are folded into the channel axis: (G*V, ..., C) ->
    (V, ..., G*C), normalized per (ghost batch, channel), and folded back. The two
    transposes cost more than slicing a static batch into per-ghost fused calls,
    but this works when the batch size is only known at run time. The returned
    statistics are pooled over the (equal-sized) ghost batches.
    """
    rank = x.shape.rank
    channels = x.shape[-1]
    inner = tf.shape(x)[1:-1]
    groups = tf.shape(x)[0] // size
    grouped = tf.reshape(x, tf.concat([[groups, size], inner, [channels]], 0))
    # (G, V, ..., C) -> (V, ..., G, C): the ghost index moves next to the channels.
    to_channels = [*range(1, rank), 0, rank]
    folded = tf.reshape(
        tf.transpose(grouped, to_channels), tf.concat([[size], inner, [groups * channels]], 0)
    )
    y, mean, variance = train(folded, tf.tile(scale, [groups]), tf.tile(offset, [groups]), epsilon)
    y = tf.reshape(y, tf.concat([[size], inner, [groups, channels]], 0))
    from_channels = [rank - 1, *range(0, rank - 1), rank]
    y = tf.reshape(tf.transpose(y, from_channels), tf.shape(x))
    mean = tf.reduce_mean(tf.reshape(mean, [groups, channels]), 0)
    variance = tf.reduce_mean(tf.reshape(variance, [groups, channels]), 0)
    return y, mean, variance
