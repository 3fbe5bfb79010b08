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


def _train_call(x, scale, offset, epsilon):
    """The fused training call: (y, mean, population variance, reserve spaces 1-3)."""
    y, mean, variance, *reserve = tf.raw_ops.FusedBatchNormV3(
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
    return (y, mean, _population(x, variance), *reserve)


def _population(x, variance):
    """The kernel's `batch_variance` output is Bessel-corrected (n / (n - 1), for the
    moving average of tf.keras v1); Keras uses the population variance, so it is
    scaled back by (n - 1) / n (and is 0 for n == 1)."""
    static = x.shape[:-1]
    if static.is_fully_defined():  # one constant multiply instead of five shape ops
        count = static.num_elements()
        return variance * ((count - 1) / count if count > 1 else 0.0)
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    return variance * tf.where(count > 1.0, (count - 1.0) / tf.maximum(count, 1.0), 0.0)


def train(x, scale, offset, epsilon):
    """Normalizes with batch statistics; returns (y, mean, population variance)."""
    return _train_call(x, scale, offset, epsilon)[:3]


def train_corrected(x, scale, offset, epsilon, correction):
    """Batch renorm's training output from ONE fused call; (y, mean, variance).

    `y = scale * (x_hat * r + d) + offset`, where `x_hat` is `x` normalized with
    its batch statistics and `(r, d) = correction(mean, variance)` are per-channel
    tensors without gradient (`correction` must read no variables: it runs inside
    a `tf.custom_gradient`). The kernel normalizes to `scale * x_hat + offset`;
    an inference-mode fused call (one pass) rescales that by `r` and shifts it.
    The gradient is the kernel's own with `scale * r` as its scale (the input
    gradient is linear in the scale), `r * d_scale + d * d_offset` for the scale
    and `d_offset` for the offset, so no pass over the data is added to the
    backward step. Measured 1.20-1.23x a plain fused training step against
    1.20-1.30x for a statistics call followed by a fused call with `r` and `d`
    folded into the scale (benchmarks/bench_layers.py, renorm rows).
    """

    @tf.custom_gradient
    def renormalized(x, scale, offset):
        y, mean, variance, *reserve = _train_call(x, scale, offset, epsilon)
        r, d = correction(mean, variance)
        # scale * x_hat + offset  ->  scale * (x_hat * r + d) + offset
        shift = scale * d + offset * (1.0 - r)
        channels = tf.shape(r)
        y = infer(y, r, shift, tf.zeros(channels), tf.fill(channels, 1.0 - epsilon), epsilon)

        def gradient(dy, *_statistics):
            dx, d_scale, d_offset, _, _ = tf.raw_ops.FusedBatchNormGradV3(
                y_backprop=dy,
                x=x,
                scale=scale * r,
                reserve_space_1=reserve[0],
                reserve_space_2=reserve[1],
                reserve_space_3=reserve[2],
                epsilon=epsilon,
                data_format=_DATA_FORMATS[x.shape.rank],
                is_training=True,
            )
            return dx, r * d_scale + d * d_offset, d_offset

        return (y, mean, variance), gradient

    y, mean, variance = renormalized(x, scale, offset)
    return y, tf.stop_gradient(mean), tf.stop_gradient(variance)


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
