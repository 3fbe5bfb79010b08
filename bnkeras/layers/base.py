"""The shared implementation of the bnkeras batch-normalization family.

`BatchNormBase` owns everything the three public layers have in common: argument
validation, weights, the training/inference switch, casting for mixed
precision, masking, cross-replica statistics, normalization and the
moving-average update. A variant overrides only the step that differs:

- `_batch_moments` (how the batch statistics are computed; ghost BN),
- `_training_affine` and `_update_moving_statistics` (batch renormalization).

Every member of the family keeps `gamma`, `beta`, `moving_mean` and
`moving_variance` with the shapes and meaning of `keras.layers.BatchNormalization`,
and its inference output is exactly BN's formula on them, so that export can treat
all of them alike.

The general path is `keras.ops` and runs on every Keras backend. On TensorFlow,
calls that TensorFlow's fused batch-norm kernel can serve (`_fused.applies`:
channels-last 4-D/5-D inputs without a mask or cross-replica statistics) take
it instead; `_fused` is imported only there, so the layers import no TensorFlow
on other backends.
"""

import collections
from typing import Any

import keras
from keras import constraints, initializers, ops, regularizers

from bnkeras.layers._utils import (
    all_reduce_sum,
    as_bool,
    as_float,
    as_int,
    divide_no_nan,
    is_floating,
    is_half,
    mask_weights,
    mean,
    on_tensorflow,
    replica_context_to_sync,
)

Moments = collections.namedtuple("Moments", ["mean", "variance", "batch_mean", "batch_variance"])
Moments.__doc__ = """Batch statistics of one training call.

`mean` and `variance` broadcast against the input and are what the input is
normalized with (per channel for BN, per example's ghost batch for ghost BN).
`batch_mean` and `batch_variance` have shape `(channels,)` and feed the moving
averages.
"""


def fused_kernel():
    """The module of TensorFlow's fused-kernel paths on the TensorFlow backend, else None."""
    if not on_tensorflow():
        return None
    from bnkeras.layers import _fused

    return _fused


class BatchNormBase(keras.layers.Layer):
    """Base of the bnkeras BN family; see `bnkeras.BatchNormalization` for the arguments."""

    def __init__(
        self,
        axis: int = -1,
        momentum: float = 0.99,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer: Any = "zeros",
        gamma_initializer: Any = "ones",
        moving_mean_initializer: Any = "zeros",
        moving_variance_initializer: Any = "ones",
        beta_regularizer: Any = None,
        gamma_regularizer: Any = None,
        beta_constraint: Any = None,
        gamma_constraint: Any = None,
        synchronized: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.axis = as_int("axis", axis)
        self.momentum = as_float("momentum", momentum, 0.0, 1.0)
        self.epsilon = as_float("epsilon", epsilon, 0.0, None, low_inclusive=False)
        self.center = as_bool("center", center)
        self.scale = as_bool("scale", scale)
        self.synchronized = as_bool("synchronized", synchronized)
        self.beta_initializer = initializers.get(beta_initializer)
        self.gamma_initializer = initializers.get(gamma_initializer)
        self.moving_mean_initializer = initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = initializers.get(moving_variance_initializer)
        self.beta_regularizer = regularizers.get(beta_regularizer)
        self.gamma_regularizer = regularizers.get(gamma_regularizer)
        self.beta_constraint = constraints.get(beta_constraint)
        self.gamma_constraint = constraints.get(gamma_constraint)
        self.supports_masking = True
        self.gamma = None
        self.beta = None
        self.moving_mean = None
        self.moving_variance = None

    # ------------------------------------------------------------------ build

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        input_shape = tuple(input_shape)
        rank = len(input_shape)
        if not -rank <= self.axis < rank:
            raise ValueError(
                f"Argument `axis` is out of range for an input of rank {rank} "
                f"(shape {input_shape}): valid values are {-rank} to {rank - 1}. "
                f"Received: axis={self.axis}"
            )
        self._channel_axis = self.axis % rank
        channels = input_shape[self._channel_axis]
        if channels is None:
            raise ValueError(
                f"The normalized axis of the input must have a defined size, but axis "
                f"{self.axis} of input shape {input_shape} is undefined (None). Give the "
                f"input a known size on that axis. Received: axis={self.axis}"
            )
        self._rank = rank
        self._reduction_axes = [a for a in range(rank) if a != self._channel_axis]
        self._broadcast_shape = [1] * rank
        self._broadcast_shape[self._channel_axis] = channels
        shape = (channels,)
        if self.scale:
            self.gamma = self.add_weight(
                shape=shape,
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                trainable=True,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=shape,
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                trainable=True,
                autocast=False,
            )
        self.moving_mean = self._add_state("moving_mean", shape, self.moving_mean_initializer)
        self.moving_variance = self._add_state(
            "moving_variance", shape, self.moving_variance_initializer
        )
        self._build_extra_state(shape)
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={self.axis: channels})

    def _add_state(self, name, shape, initializer, dtype=None, aggregation="mean"):
        # Moving statistics: never trained, never autocast; under tf.distribute the
        # replicas' updates are averaged (identical when `synchronized=True`).
        return self.add_weight(
            shape=shape,
            name=name,
            initializer=initializer,
            dtype=dtype,
            trainable=False,
            autocast=False,
            aggregation=aggregation,
        )

    def _build_extra_state(self, shape):
        """Hook for variants that keep more state (renorm)."""

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    # ------------------------------------------------------------------- call

    def call(self, inputs: Any, training: bool | None = None, mask: Any = None) -> Any:
        if mask is not None and len(mask.shape) != len(inputs.shape) - 1:
            raise ValueError(
                "The mask of a batch-normalization layer must have one dimension less "
                f"than its input. Received: mask.shape={mask.shape}, "
                f"inputs.shape={inputs.shape}"
            )
        if not is_floating(inputs.dtype):
            # Integer inputs (e.g. uint8 images) are normalized in float32, as Keras does.
            inputs = ops.cast(inputs, "float32")
        x = inputs
        if is_half(x.dtype):
            # Statistics overflow in half precision: normalize in float32, then
            # cast the output back (the fused kernel does the same internally).
            x = ops.cast(x, "float32")
        if training and self.trainable:
            outputs = self._training_outputs(x, inputs, mask)
        else:
            outputs = self._inference_outputs(x, inputs)
        return ops.cast(outputs, self.compute_dtype)

    def _gamma_beta(self, dtype):
        gamma = ops.cast(self.gamma, dtype) if self.scale else None
        beta = ops.cast(self.beta, dtype) if self.center else None
        return gamma, beta

    def _to_broadcast(self, vector):
        if vector is None or self._channel_axis == self._rank - 1:
            return vector
        return ops.reshape(vector, self._broadcast_shape)

    def _normalize(self, x, mean, variance, gamma, beta):
        """BN's formula with per-channel `gamma`, `beta` (or None) and broadcastable
        `mean`, `variance`."""
        return normalize(
            x, mean, variance, self._to_broadcast(gamma), self._to_broadcast(beta), self.epsilon
        )

    def _inference_outputs(self, x, inputs):
        fused = fused_kernel()
        if fused is not None and fused.applies(self, inputs, None):
            scale, offset = self._fused_scale_offset(*self._gamma_beta("float32"))
            return fused.infer(
                inputs,
                scale,
                offset,
                ops.cast(self.moving_mean, "float32"),
                ops.cast(self.moving_variance, "float32"),
                self.epsilon,
            )
        gamma, beta = self._gamma_beta(x.dtype)
        mean = self._to_broadcast(ops.cast(self.moving_mean, x.dtype))
        variance = self._to_broadcast(ops.cast(self.moving_variance, x.dtype))
        return self._normalize(x, mean, variance, gamma, beta)

    def _training_outputs(self, x, inputs, mask):
        fused = fused_kernel()
        if fused is not None and fused.applies(self, inputs, mask):
            outputs = self._fused_training_outputs(inputs)
            if outputs is not None:
                return outputs
        moments = self._batch_moments(x, mask)
        gamma, beta = self._gamma_beta(x.dtype)
        gamma, beta = self._training_affine(moments.batch_mean, moments.batch_variance, gamma, beta)
        self._update_moving_statistics(moments.batch_mean, moments.batch_variance)
        return self._normalize(x, moments.mean, moments.variance, gamma, beta)

    def _fused_scale_offset(self, gamma, beta):
        channels = self.moving_mean.shape[0]
        scale = ops.ones([channels], "float32") if gamma is None else gamma
        offset = ops.zeros([channels], "float32") if beta is None else beta
        return scale, offset

    def _fused_training_outputs(self, inputs):
        """Training on the fused kernel (TensorFlow only; None: take the general
        path instead)."""
        fused = fused_kernel()
        scale, offset = self._fused_scale_offset(*self._gamma_beta("float32"))
        correction = None if self._recalibrating else self._batch_correction()
        if correction is None:
            outputs, mean, variance = fused.train(inputs, scale, offset, self.epsilon)
            self._update_moving_statistics(mean, variance)
            return outputs
        outputs, mean, variance = fused.train_corrected(
            inputs, scale, offset, self.epsilon, correction
        )
        # The correction read the renorm statistics that this update overwrites;
        # without an explicit order the read could come after the update (seen
        # as graph and XLA steps disagreeing now and then under load).
        import tensorflow as tf

        with tf.control_dependencies([outputs]):
            self._update_moving_statistics(mean, variance)
        return outputs

    # ---------------------------------------------------- variant extension points

    def _batch_moments(self, x, mask):
        """Batch statistics over all axes but the channel axis (optionally all-reduced)."""
        ctx = replica_context_to_sync(self.synchronized)
        axes = self._reduction_axes
        if mask is None and ctx is None:
            mean, variance = moments(x, axes)
        else:
            mean, variance = weighted_moments(x, mask_weights(mask, x), axes, ctx)
        return Moments(mean, variance, ops.reshape(mean, [-1]), ops.reshape(variance, [-1]))

    def _batch_correction(self):
        """None, or renorm's `(batch mean, batch variance) -> (r, d)` for the fused path.

        The returned function maps per-channel float32 statistics to the per-channel
        correction of the normalized input, `x_hat * r + d`, without gradient; it
        must read no variables (read them when building it).
        """
        return None

    def _training_affine(self, batch_mean, batch_variance, gamma, beta):
        """Scale and offset applied to the normalized input in training (renorm: r, d)."""
        return gamma, beta

    # True while `bnkeras.recalibrate_batchnorm` recomputes the moving statistics:
    # training is then plain BN on the variant's batch statistics, with BN's update
    # of `moving_mean` and `moving_variance` (the means of the batch means and
    # variances). Variants that override `_training_affine` or
    # `_update_moving_statistics` (renorm) must honour it.
    _recalibrating = False

    def _update_moving_statistics(self, batch_mean, batch_variance):
        self._assign_moving_average(self.moving_mean, batch_mean, self.momentum)
        self._assign_moving_average(self.moving_variance, batch_variance, self.momentum)

    @staticmethod
    def _assign_moving_average(variable, value, momentum):
        # v * m + x * (1 - m), as v - (v - x) * (1 - m): fewer ops per step.
        value = ops.cast(value, variable.dtype)
        variable.assign_sub((variable - value) * (1.0 - momentum))

    # ----------------------------------------------------------------- config

    def get_config(self) -> dict[str, Any]:
        config = {
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            "beta_initializer": initializers.serialize(self.beta_initializer),
            "gamma_initializer": initializers.serialize(self.gamma_initializer),
            "moving_mean_initializer": initializers.serialize(self.moving_mean_initializer),
            "moving_variance_initializer": initializers.serialize(self.moving_variance_initializer),
            "beta_regularizer": regularizers.serialize(self.beta_regularizer),
            "gamma_regularizer": regularizers.serialize(self.gamma_regularizer),
            "beta_constraint": constraints.serialize(self.beta_constraint),
            "gamma_constraint": constraints.serialize(self.gamma_constraint),
            "synchronized": self.synchronized,
        }
        return {**super().get_config(), **config}


def weighted_moments(x, weights, axes, ctx=None):
    """Two-pass mean and variance over `axes` (keepdims), optionally masked and all-reduced.

    `weights` is None or a 0/1 tensor of x's shape. With a replica context the sums
    are added over replicas, so every replica gets the statistics of the global batch.
    """
    if weights is None:
        total = ops.sum(x, axes, keepdims=True)
        # Elements per channel: the input's size over the statistics' size.
        count = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.size(total), x.dtype)
        count = ops.ones_like(total) * count
    else:
        total = ops.sum(x * weights, axes, keepdims=True)
        count = ops.sum(weights, axes, keepdims=True)
    total, count = all_reduce_sum(ctx, total, count)
    mean = divide_no_nan(total, count)
    deviation = ops.square(x - mean)
    if weights is not None:
        deviation = deviation * weights
    (squares,) = all_reduce_sum(ctx, ops.sum(deviation, axes, keepdims=True))
    return mean, divide_no_nan(squares, count)


def moments(x, axes):
    """Mean and variance over `axes` (keepdims) in two passes (the variance of
    `x - mean`: no cancellation): tf.nn.moments on TensorFlow (its fused squared
    difference), the same computation in keras.ops elsewhere."""
    if on_tensorflow():
        import tensorflow as tf

        return tf.nn.moments(x, axes, keepdims=True)
    average = mean(x, axes, keepdims=True)
    return average, mean(ops.square(x - ops.stop_gradient(average)), axes, keepdims=True)


def normalize(x, mean, variance, gamma, beta, epsilon):
    """`gamma * (x - mean) / sqrt(variance + epsilon) + beta`, every argument
    broadcastable against `x` (`gamma`, `beta` may be None), computed as
    `tf.nn.batch_normalization` and keras.layers.BatchNormalization compute it:
    `x * inv + (beta - mean * inv)` with `inv = gamma * rsqrt(variance + epsilon)`."""
    inv = ops.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * gamma
    offset = -mean * inv if beta is None else beta - mean * inv
    return x * ops.cast(inv, x.dtype) + ops.cast(offset, x.dtype)
