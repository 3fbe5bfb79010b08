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
"""

import collections
from typing import Any

import keras
import tensorflow as tf
from keras import constraints, initializers, regularizers

from bnkeras.layers import _fused
from bnkeras.layers._utils import (
    all_reduce_sum,
    as_bool,
    as_float,
    as_int,
    check_tensorflow_backend,
    mask_weights,
    replica_context_to_sync,
)

Moments = collections.namedtuple("Moments", ["mean", "variance", "batch_mean", "batch_variance"])
Moments.__doc__ = """Batch statistics of one training call.

`mean` and `variance` broadcast against the input and are what the input is
normalized with (per channel for BN, per example's ghost batch for ghost BN).
`batch_mean` and `batch_variance` have shape `(channels,)` and feed the moving
averages.
"""


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
        check_tensorflow_backend(type(self).__name__)
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
        if not inputs.dtype.is_floating:
            # Integer inputs (e.g. uint8 images) are normalized in float32, as Keras does.
            inputs = tf.cast(inputs, tf.float32)
        x = inputs
        if x.dtype in (tf.float16, tf.bfloat16):
            # Statistics overflow in half precision: normalize in float32, then
            # cast the output back (the fused kernel does the same internally).
            x = tf.cast(x, tf.float32)
        if training and self.trainable:
            outputs = self._training_outputs(x, inputs, mask)
        else:
            outputs = self._inference_outputs(x, inputs)
        return tf.cast(outputs, self.compute_dtype)

    def _gamma_beta(self, dtype):
        gamma = tf.cast(self.gamma, dtype) if self.scale else None
        beta = tf.cast(self.beta, dtype) if self.center else None
        return gamma, beta

    def _to_broadcast(self, vector):
        if vector is None or self._channel_axis == self._rank - 1:
            return vector
        return tf.reshape(vector, self._broadcast_shape)

    def _normalize(self, x, mean, variance, gamma, beta):
        # tf.nn.batch_normalization is the formula keras.layers.BatchNormalization
        # uses: x * (gamma * rsqrt(var + eps)) + (beta - mean * gamma * rsqrt(var + eps)).
        return tf.nn.batch_normalization(
            x,
            mean=mean,
            variance=variance,
            offset=self._to_broadcast(beta),
            scale=self._to_broadcast(gamma),
            variance_epsilon=self.epsilon,
        )

    def _inference_outputs(self, x, inputs):
        if _fused.applies(self, inputs, None):
            scale, offset = self._fused_scale_offset(*self._gamma_beta(tf.float32))
            return _fused.infer(
                inputs,
                scale,
                offset,
                tf.cast(self.moving_mean, tf.float32),
                tf.cast(self.moving_variance, tf.float32),
                self.epsilon,
            )
        gamma, beta = self._gamma_beta(x.dtype)
        mean = self._to_broadcast(tf.cast(self.moving_mean, x.dtype))
        variance = self._to_broadcast(tf.cast(self.moving_variance, x.dtype))
        return self._normalize(x, mean, variance, gamma, beta)

    def _training_outputs(self, x, inputs, mask):
        if _fused.applies(self, inputs, mask):
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
        scale = tf.ones([channels], tf.float32) if gamma is None else gamma
        offset = tf.zeros([channels], tf.float32) if beta is None else beta
        return scale, offset

    def _fused_training_outputs(self, inputs):
        """Training on the fused kernel (None: take the general path instead)."""
        scale, offset = self._fused_scale_offset(*self._gamma_beta(tf.float32))
        correction = None if self._recalibrating else self._batch_correction()
        if correction is None:
            outputs, mean, variance = _fused.train(inputs, scale, offset, self.epsilon)
            self._update_moving_statistics(mean, variance)
            return outputs
        outputs, mean, variance = _fused.train_corrected(
            inputs, scale, offset, self.epsilon, correction
        )
        # The correction read the renorm statistics that this update overwrites;
        # without an explicit order the read could come after the update (seen
        # as graph and XLA steps disagreeing now and then under load).
        with tf.control_dependencies([outputs]):
            self._update_moving_statistics(mean, variance)
        return outputs

    # ---------------------------------------------------- variant extension points

    def _batch_moments(self, x, mask):
        """Batch statistics over all axes but the channel axis (optionally all-reduced)."""
        ctx = replica_context_to_sync(self.synchronized)
        axes = self._reduction_axes
        if mask is None and ctx is None:
            mean, variance = tf.nn.moments(x, axes, keepdims=True)
        else:
            mean, variance = weighted_moments(x, mask_weights(mask, x), axes, ctx)
        return Moments(mean, variance, tf.reshape(mean, [-1]), tf.reshape(variance, [-1]))

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
        value = tf.cast(value, variable.dtype)
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
        count = tf.cast(tf.reduce_prod(tf.gather(tf.shape(x), axes)), x.dtype)
        total = tf.reduce_sum(x, axes, keepdims=True)
        count = tf.fill(tf.shape(total), count)
    else:
        total = tf.reduce_sum(x * weights, axes, keepdims=True)
        count = tf.reduce_sum(weights, axes, keepdims=True)
    total, count = all_reduce_sum(ctx, total, count)
    mean = tf.math.divide_no_nan(total, count)
    deviation = tf.square(x - mean)
    if weights is not None:
        deviation = deviation * weights
    (squares,) = all_reduce_sum(ctx, tf.reduce_sum(deviation, axes, keepdims=True))
    return mean, tf.math.divide_no_nan(squares, count)
