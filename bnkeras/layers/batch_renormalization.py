"""`bnkeras.BatchRenormalization`: Batch Renormalization (Ioffe, 2017) with the paper's warm-up."""

import keras
import tensorflow as tf
from keras import initializers

from bnkeras.layers._utils import as_float
from bnkeras.layers.base import BatchNormBase
from bnkeras.layers.renorm_schedules import WARMUP, LinearRamp

_SCHEDULE_TYPES = (LinearRamp, keras.optimizers.schedules.LearningRateSchedule)


def _clone_initializer(initializer):
    if isinstance(initializer, initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def _resolve_clip(name, value, minimum):
    """A float (inf allowed) or a schedule of steps for the clipping bound `name`."""
    valid = (
        f"a number >= {minimum:g}, 'warmup' (the paper's schedule), a bnkeras.LinearRamp "
        "or a keras.optimizers.schedules.LearningRateSchedule"
    )
    if isinstance(value, str):
        if value == "warmup":
            return WARMUP[name]
        raise ValueError(
            f"Unknown schedule for `{name}`: valid are {valid}. Received: {name}={value!r}"
        )
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if isinstance(value, LinearRamp):
        if min(value.initial_value, value.final_value) < minimum:
            raise ValueError(
                f"The schedule for `{name}` must stay >= {minimum:g}. Received: {name}={value!r}"
            )
        return value
    if isinstance(value, _SCHEDULE_TYPES):
        return value
    try:
        return as_float(name, value, minimum, None)
    except ValueError:
        raise ValueError(f"Argument `{name}` must be {valid}. Received: {name}={value!r}") from None


@keras.saving.register_keras_serializable(package="bnkeras")
class BatchRenormalization(BatchNormBase):
    """Batch Renormalization (Ioffe, 2017, Algorithm 1), with the paper's warm-up.

    In training, the batch statistics `mu_B` and `sigma_B = sqrt(var_B + epsilon)`
    normalize the input as in BN, and the result is corrected towards the moving
    statistics `mu`, `sigma`:
    `y = gamma * ((x - mu_B) / sigma_B * r + d) + beta` with
    `r = stop_gradient(clip(sigma_B / sigma, 1 / rmax, rmax))` and
    `d = stop_gradient(clip((mu_B - mu) / sigma, -dmax, dmax))`.
    `mu` and `sigma` (weights `renorm_mean`, `renorm_stddev`) are moving averages
    of `mu_B` and `sigma_B` with momentum `renorm_momentum`, updated after they
    are used. With `rmax=1, dmax=0` this is plain BN.

    In inference the layer is plain BN on `moving_mean` and `moving_variance`
    (momentum `momentum`). As in `keras.layers.BatchNormalization(renorm=True)`,
    the inference standard deviation is averaged rather than the variance:
    `sqrt(moving_variance + epsilon)` is the moving average of `sigma_B`.
    Unlike Keras, no separate `moving_stddev` weight is kept (it is
    `sqrt(moving_variance)` before the first training step, as Keras initializes
    it, and `sqrt(moving_variance + epsilon)` after), `rmin` is always `1 / rmax`, and a
    `renorm_step` counter (int64) records the training steps that drive the
    schedules; it is saved with the weights, so resumed training continues the
    warm-up where it stopped.

    Args:
        rmax: Upper clip of `r` (>= 1): a number, `"warmup"` (default: the
            paper's schedule, 1 for the first 5k steps, then linear to 3 at
            40k), a `bnkeras.LinearRamp` or a Keras `LearningRateSchedule`
            (called with the step).
        dmax: Clip of `|d|` (>= 0): a number, `"warmup"` (default: 0 for the
            first 5k steps, then linear to 5 at 25k) or a schedule as for `rmax`.
        renorm_momentum: Momentum of `renorm_mean` and `renorm_stddev`, in [0, 1).
        **kwargs: Every argument of `bnkeras.BatchNormalization` (axis,
            momentum, epsilon, center, scale, initializers, regularizers,
            constraints, synchronized, name, dtype).

    Call arguments:
        inputs: Input tensor of any rank.
        training: Python bool. True normalizes with batch statistics corrected
            by `r` and `d`, updates the moving statistics and advances the
            step; False/None is BN inference on the moving statistics. A layer
            with `trainable=False` always runs in inference mode.
        mask: Optional boolean tensor with one dimension less than `inputs`.

    Reference:
        - [Ioffe, 2017](https://arxiv.org/abs/1702.03275).
    """

    def __init__(self, rmax="warmup", dmax="warmup", renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        self.rmax = _resolve_clip("rmax", rmax, 1.0)
        self.dmax = _resolve_clip("dmax", dmax, 0.0)
        self._rmax_config = rmax if isinstance(rmax, (str, float, int)) else None
        self._dmax_config = dmax if isinstance(dmax, (str, float, int)) else None
        self.renorm_momentum = as_float("renorm_momentum", renorm_momentum, 0.0, 1.0)
        self.renorm_mean = None
        self.renorm_stddev = None
        self.renorm_step = None

    def _build_extra_state(self, shape):
        variance_init = _clone_initializer(self.moving_variance_initializer)

        def stddev_initializer(shape, dtype=None):
            # sqrt(variance) without epsilon, as Keras initializes its stddevs.
            return tf.sqrt(variance_init(shape, dtype=dtype))

        self.renorm_mean = self._add_state(
            "renorm_mean", shape, _clone_initializer(self.moving_mean_initializer)
        )
        self.renorm_stddev = self._add_state("renorm_stddev", shape, stddev_initializer)
        self.renorm_step = self._add_state(
            "renorm_step", (), "zeros", dtype="int64", aggregation="only_first_replica"
        )

    _affine_uses_batch_moments = True

    def _clip_value(self, bound, dtype):
        if isinstance(bound, float):
            return tf.constant(bound, dtype)
        return tf.cast(bound(self.renorm_step), dtype)

    def _training_affine(self, batch_mean, batch_variance, gamma, beta):
        dtype = batch_mean.dtype
        stddev = tf.sqrt(batch_variance + self.epsilon)
        renorm_mean = tf.cast(self.renorm_mean, dtype)
        # Guard against a zero moving stddev early on (as Keras).
        renorm_stddev = tf.maximum(tf.cast(self.renorm_stddev, dtype), self.epsilon**0.5)
        rmax = self._clip_value(self.rmax, dtype)
        dmax = self._clip_value(self.dmax, dtype)
        r = tf.stop_gradient(tf.clip_by_value(stddev / renorm_stddev, 1.0 / rmax, rmax))
        d = tf.stop_gradient(
            tf.clip_by_value((batch_mean - renorm_mean) / renorm_stddev, -dmax, dmax)
        )
        # (x_hat * r + d) * gamma + beta == x_hat * (r * gamma) + (d * gamma + beta)
        if gamma is None:
            return r, d if beta is None else d + beta
        offset = d * gamma if beta is None else d * gamma + beta
        return r * gamma, offset

    def _update_moving_statistics(self, batch_mean, batch_variance):
        stddev = tf.sqrt(batch_variance + self.epsilon)
        self._assign_moving_average(self.renorm_mean, batch_mean, self.renorm_momentum)
        self._assign_moving_average(self.renorm_stddev, stddev, self.renorm_momentum)
        self._assign_moving_average(self.moving_mean, batch_mean, self.momentum)
        # Keras keeps a moving_stddev weight that starts at sqrt(moving_variance) and
        # later equals sqrt(moving_variance + epsilon); so does this stddev.
        moving_stddev = tf.sqrt(
            self.moving_variance + tf.where(self.renorm_step == 0, 0.0, self.epsilon)
        )
        new_stddev = moving_stddev * self.momentum + tf.cast(stddev, moving_stddev.dtype) * (
            1.0 - self.momentum
        )
        self.moving_variance.assign(tf.nn.relu(tf.square(new_stddev) - self.epsilon))
        self.renorm_step.assign_add(1)

    def get_config(self):
        def serialize(original, resolved):
            if original is not None:
                return original
            return keras.saving.serialize_keras_object(resolved)

        config = {
            "rmax": serialize(self._rmax_config, self.rmax),
            "dmax": serialize(self._dmax_config, self.dmax),
            "renorm_momentum": self.renorm_momentum,
        }
        return {**super().get_config(), **config}
