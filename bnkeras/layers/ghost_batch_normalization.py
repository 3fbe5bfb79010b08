"""`bnkeras.GhostBatchNormalization`: BN over virtual sub-batches (Hoffer et al., 2017)."""

from typing import Any

import keras
from keras import ops

from bnkeras.layers._utils import (
    all_reduce_sum,
    as_int,
    divide_no_nan,
    mask_weights,
    replica_context_to_sync,
    segment_sum,
)
from bnkeras.layers.base import BatchNormBase, Moments, fused_kernel

# The fused-kernel paths below (`_fused_*`, `_pooled`, `_unless_empty`, the
# replica numbering of `_ghost_ids`) run on TensorFlow only and import it there.


def _pooled(parts, weights):
    """(outputs, mean, variance) of consecutive parts of a batch: the outputs
    concatenated, the statistics weighted by each part's share of the batch."""
    import tensorflow as tf

    return (
        tf.concat([part[0] for part in parts], 0),
        tf.add_n([w * part[1] for w, part in zip(weights, parts, strict=True)]),
        tf.add_n([w * part[2] for w, part in zip(weights, parts, strict=True)]),
    )


def _unless_empty(count, *weights):
    """The weights, cut from the gradient when a fused call gets `count` == 0 rows:
    XLA's gradient of an empty batch's scale is 0 * NaN (its statistics are NaN)."""
    import tensorflow as tf

    return [tf.where(count > 0, w, tf.stop_gradient(w)) for w in weights]


class GhostBatches:
    """Batch statistics over ghost batches: consecutive groups of
    `self.virtual_batch_size` examples, the last one holding the remainder.

    Shared by the `BatchNormBase` variants that split the batch
    (`GhostBatchNormalization`, `BatchRenormalization(virtual_batch_size=...)`).
    """

    def _check_batch_axis(self, input_shape):
        if self._channel_axis == 0:
            raise ValueError(
                f"{type(self).__name__} splits the batch axis into ghost batches, so it "
                f"cannot normalize over axis 0 of input shape {tuple(input_shape)}. "
                f"Received: axis={self.axis}"
            )

    def _ghost_moments(self, x, mask):
        """Moments of the ghost batches: `mean`/`variance` per example (its ghost
        batch's), `batch_mean`/`batch_variance` pooled over the ghost batches."""
        ctx = replica_context_to_sync(self.synchronized)
        size = self.virtual_batch_size
        spatial = [a for a in range(1, self._rank) if a != self._channel_axis]
        weights = mask_weights(mask, x)

        def spatial_sum(t):  # per-example sums over the spatial axes: (n, channels)
            return ops.sum(t, spatial) if spatial else t

        sums = spatial_sum(x if weights is None else x * weights)
        if weights is None:
            # Elements per example and channel: the input's size over the sums' size.
            per_example = ops.cast(ops.size(x), x.dtype) / ops.cast(
                ops.maximum(ops.size(sums), 1), x.dtype
            )
            counts = ops.ones_like(sums) * per_example
        else:
            counts = spatial_sum(weights)
        ids, num_groups = self._ghost_ids(ops.shape(x)[0], size, ctx)
        group_sums, group_counts = all_reduce_sum(
            ctx,
            segment_sum(sums, ids, num_groups),
            segment_sum(counts, ids, num_groups),
        )
        group_mean = divide_no_nan(group_sums, group_counts)
        mean = self._per_example(ops.take(group_mean, ids, axis=0))
        deviation = ops.square(x - mean)
        if weights is not None:
            deviation = deviation * weights
        (group_squares,) = all_reduce_sum(ctx, segment_sum(spatial_sum(deviation), ids, num_groups))
        variance = self._per_example(
            ops.take(divide_no_nan(group_squares, group_counts), ids, axis=0)
        )
        # Pooled over ghost batches, each weighted by its size. An empty batch gives
        # NaN as in BatchNormalization (0 when every position is masked, as there).
        total = ops.sum(group_counts, 0)
        divide = ops.divide if weights is None else divide_no_nan
        batch_mean = divide(ops.sum(group_sums, 0), total)
        batch_variance = divide(ops.sum(group_squares, 0), total)
        return Moments(mean, variance, batch_mean, batch_variance)

    @staticmethod
    def _ghost_ids(local_size, size, ctx):
        """Ghost-batch index of each local example, and the number of ghost batches."""
        if ctx is None:
            return ops.arange(local_size) // size, (local_size + size - 1) // size
        import tensorflow as tf

        # Number the examples of the global batch: replica 0's first.
        replicas = ctx.num_replicas_in_sync
        one_hot = tf.one_hot(ctx.replica_id_in_sync_group, replicas, dtype=tf.int32)
        sizes = ctx.all_reduce(tf.distribute.ReduceOp.SUM, one_hot * local_size)
        offset = tf.reduce_sum(
            sizes * tf.cast(tf.range(replicas) < ctx.replica_id_in_sync_group, tf.int32)
        )
        total = tf.reduce_sum(sizes)
        return (offset + tf.range(local_size)) // size, (total + size - 1) // size

    def _per_example(self, values):
        """(n, channels) -> broadcastable against the input."""
        shape = [-1] + [1] * (self._rank - 1)
        shape[self._channel_axis] = values.shape[-1]
        return ops.reshape(values, shape)


@keras.saving.register_keras_serializable(package="bnkeras")
class GhostBatchNormalization(GhostBatches, BatchNormBase):
    """Ghost batch normalization (Hoffer et al., 2017).

    In training, the batch is split into "ghost" batches of `virtual_batch_size`
    consecutive examples (contiguous groups: examples `0..V-1`, `V..2V-1`, ...;
    tf.keras's `virtual_batch_size` used strided groups), and every example is
    normalized with the mean and variance of its own ghost batch:
    `y = gamma * (x - mean_g) / sqrt(var_g + epsilon) + beta`. A batch whose size is
    not a multiple of `virtual_batch_size` (the last batch of an epoch) ends with one
    smaller ghost batch of the remaining examples. With `virtual_batch_size` at
    least the batch size this is exactly `BatchNormalization`.

    The moving statistics are updated once per call with the ghost statistics
    pooled over the batch: the mean of the ghost means and the mean of the ghost
    variances, each ghost batch weighted by its size (so the mean is the batch
    mean, and the variance is the within-ghost variance that training normalized
    with). Inference is BN on the moving statistics at any batch size. The weights
    have exactly BN's shapes, so a ghost model and a BN model load each other's
    weights.

    Args:
        virtual_batch_size: Positive int, the size of a ghost batch.
        **kwargs: Every argument of `bnkeras.BatchNormalization` (axis,
            momentum, epsilon, center, scale, initializers, regularizers,
            constraints, synchronized, name, dtype). The axis must not be the
            batch axis. With `synchronized=True` under `tf.distribute`, ghost
            batches are cut from the global batch (replica 0's examples first),
            so a ghost batch may span replicas, and the result equals
            single-device ghost BN on the global batch.

    Call arguments:
        inputs: Input tensor of rank >= 2, batch first.
        training: Python bool. True normalizes each ghost batch with its own
            statistics and updates the moving statistics; False/None uses the
            moving statistics. A layer with `trainable=False` always runs in
            inference mode.
        mask: Optional boolean tensor with one dimension less than `inputs`;
            masked positions are left out of the ghost statistics.

    Reference:
        - [Hoffer et al., 2017](https://arxiv.org/abs/1705.08741).
    """

    def __init__(self, virtual_batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.virtual_batch_size = as_int("virtual_batch_size", virtual_batch_size, minimum=1)

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        self._check_batch_axis(input_shape)

    def _fused_training_outputs(self, inputs):
        scale, offset = self._fused_scale_offset(*self._gamma_beta("float32"))
        if inputs.shape[0] is None:
            outputs, mean, variance = self._fused_dynamic_batch(inputs, scale, offset)
        else:
            outputs, mean, variance = self._fused_static_batch(inputs, scale, offset)
        self._update_moving_statistics(mean, variance)
        return outputs

    def _fused_static_batch(self, inputs, scale, offset):
        # Each ghost batch is a zero-copy slice along the batch axis with its own
        # fused call; measured faster than one call on ghost batches folded into
        # the channels (see benchmarks/bench_layers.py).
        import tensorflow as tf

        _fused = fused_kernel()
        batch, size = inputs.shape[0], self.virtual_batch_size
        if batch <= size:  # one ghost batch (or an empty batch): plain BN
            return _fused.train(inputs, scale, offset, self.epsilon)
        sizes = [size] * (batch // size) + ([batch % size] if batch % size else [])
        results = [
            _fused.train(part, scale, offset, self.epsilon) for part in tf.split(inputs, sizes)
        ]
        return _pooled(results, [n / batch for n in sizes])

    def _fused_dynamic_batch(self, inputs, scale, offset):
        # The batch size is known only at run time (e.g. inside fit): the whole
        # ghost batches go through one fused call folded into the channels, the
        # remainder (the last batch of an epoch) through another. No tf.cond: both
        # calls always run, the one on an empty part costs nothing, and the graph
        # compiles under XLA for every batch size.
        import tensorflow as tf

        _fused = fused_kernel()
        size, epsilon = self.virtual_batch_size, self.epsilon
        batch = tf.shape(inputs)[0]
        whole = batch // size * size
        # As 4-D (N, D*H, W, C): the kernel's gradient of an empty 5-D input has a
        # wrong rank.
        inner = inputs.shape[1:-1]
        flat = tf.reshape(inputs, [batch, inner[:-1].num_elements(), inner[-1], inputs.shape[-1]])
        head, tail = tf.split(flat, tf.stack([whole, batch - whole]))
        head = _fused.train_ghost_batches(head, size, *_unless_empty(whole, scale, offset), epsilon)
        tail = _fused.train(tail, *_unless_empty(batch - whole, scale, offset), epsilon)
        outputs = tf.reshape(tf.concat([head[0], tail[0]], 0), tf.shape(inputs))
        # Statistics of an empty part are NaN: weigh them out, except that an empty
        # batch gives NaN statistics as BatchNormalization's do.
        weight = tf.cast(whole, tf.float32) / tf.cast(batch, tf.float32)

        def pool(head_stat, tail_stat):
            pooled = weight * head_stat + (1.0 - weight) * tail_stat
            return tf.where(whole == 0, tail_stat, tf.where(whole == batch, head_stat, pooled))

        return outputs, pool(head[1], tail[1]), pool(head[2], tail[2])

    def _batch_moments(self, x, mask):
        return self._ghost_moments(x, mask)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "virtual_batch_size": self.virtual_batch_size}
