"""`bnkeras.BatchRenormalization`: Batch Renormalization (Ioffe, 2017) with the paper's warm-up."""

from typing import Any

import keras
from keras import initializers, ops

from bnkeras.layers._utils import as_bool, as_float, as_int, mean, step_dtype
from bnkeras.layers.base import BatchNormBase, normalize
from bnkeras.layers.ghost_batch_normalization import GhostBatches
from bnkeras.layers.renorm_schedules import LinearRamp, warmup

_SCHEDULE_TYPES = (LinearRamp, keras.optimizers.schedules.LearningRateSchedule)


def _clone_initializer(initializer):
    if isinstance(initializer, initializers.Initializer):
        return initializer.__class__.from_config(initializer.get_config())
    return initializer


def _resolve_clip(name, value, minimum, total_steps):
    """A float (inf allowed) or a schedule of steps for the clipping bound `name`."""
    valid = (
        f"a number >= {minimum:g}, 'warmup' (the paper's schedule), a bnkeras.LinearRamp "
        "or a keras.optimizers.schedules.LearningRateSchedule"
    )
    if isinstance(value, str):
        if value == "warmup":
            return warmup(name, total_steps)
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
class BatchRenormalization(GhostBatches, BatchNormBase):
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
    it, and `sqrt(moving_variance + epsilon)` after), `rmin` is always `1 / rmax`,
    and a `renorm_step` counter (int64; int32 on JAX without `jax_enable_x64`)
    records the training steps that drive the schedules; it is saved with the
    weights, so resumed training continues the warm-up where it stopped.

    With `virtual_batch_size`, training splits the batch into ghost batches as
    `bnkeras.GhostBatchNormalization` does (renorm over microbatches, as in the
    paper's small-minibatch experiment): each ghost batch is normalized with its
    own statistics and corrected with its own `r` and `d`. The renorm and moving
    statistics are updated once per call with the batch mean and the mean of the
    ghost batches' stddevs (each weighted by its size). With `rmax=1, dmax=0` the
    training output is exactly ghost BN's; with one ghost batch it is exactly
    renorm.

    Args:
        rmax: Upper clip of `r` (>= 1): a number, `"warmup"` (default: the
            paper's schedule, 1 for the first 5k steps, then linear to 3 at
            40k; see `total_steps`), a `bnkeras.LinearRamp` or a Keras
            `LearningRateSchedule` (called with the step).
        dmax: Clip of `|d|` (>= 0): a number, `"warmup"` (default: 0 for the
            first 5k steps, then linear to 5 at 25k) or a schedule as for `rmax`.
        renorm_momentum: Momentum of `renorm_mean` and `renorm_stddev`, in [0, 1).
        total_steps: None (default) or the length of the training run in steps
            (int >= 1): the `"warmup"` schedules are then laid out at the paper's
            fractions of its ~130k-step runs instead of its absolute steps:
            held until 3.8% of the run, `dmax` full at 19.2%, `rmax` full at
            30.8%. A run shorter than 5k steps is otherwise plain BN throughout.
        virtual_batch_size: None (default: one group, the whole batch) or the
            size of the ghost batches (int >= 1) that training renormalizes
            separately. The axis must not be the batch axis.
        renorm_bias_correction: If True, `renorm_mean` and `renorm_stddev` are
            bias-corrected moving averages (as Adam's moments): the k-th update
            weighs the batch by `(1 - renorm_momentum) / (1 - renorm_momentum**k)`,
            so they are true weighted averages of the batches seen, free of their
            initial values 0 and ~1, and the first step (no batch seen) is plain
            BN. Default False, as Keras (the initial values fade out at
            `renorm_momentum**k`, e.g. still 37% after 100 steps at 0.99).
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

    def __init__(
        self,
        rmax: float | str | LinearRamp | keras.optimizers.schedules.LearningRateSchedule = "warmup",
        dmax: float | str | LinearRamp | keras.optimizers.schedules.LearningRateSchedule = "warmup",
        renorm_momentum: float = 0.99,
        total_steps: int | None = None,
        virtual_batch_size: int | None = None,
        renorm_bias_correction: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if total_steps is not None:
            total_steps = as_int("total_steps", total_steps, minimum=1)
            if "warmup" not in (rmax, dmax):
                raise ValueError(
                    "Argument `total_steps` lays out the 'warmup' schedules over a run, but "
                    f"neither `rmax` ({rmax!r}) nor `dmax` ({dmax!r}) is 'warmup': pass "
                    f"rmax='warmup' and/or dmax='warmup', or total_steps=None. "
                    f"Received: total_steps={total_steps}"
                )
        self.total_steps = total_steps
        self.rmax = _resolve_clip("rmax", rmax, 1.0, total_steps)
        self.dmax = _resolve_clip("dmax", dmax, 0.0, total_steps)
        self._rmax_config = rmax if isinstance(rmax, (str, float, int)) else None
        self._dmax_config = dmax if isinstance(dmax, (str, float, int)) else None
        self.renorm_momentum = as_float("renorm_momentum", renorm_momentum, 0.0, 1.0)
        if virtual_batch_size is not None:
            virtual_batch_size = as_int("virtual_batch_size", virtual_batch_size, minimum=1)
        self.virtual_batch_size = virtual_batch_size
        self.renorm_bias_correction = as_bool("renorm_bias_correction", renorm_bias_correction)
        self.renorm_mean = None
        self.renorm_stddev = None
        self.renorm_step = None

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        super().build(input_shape)
        if self.virtual_batch_size is not None:
            self._check_batch_axis(input_shape)

    def _build_extra_state(self, shape):
        variance_init = _clone_initializer(self.moving_variance_initializer)

        def stddev_initializer(shape, dtype=None):
            # sqrt(variance) without epsilon, as Keras initializes its stddevs.
            return ops.sqrt(variance_init(shape, dtype=dtype))

        self.renorm_mean = self._add_state(
            "renorm_mean", shape, _clone_initializer(self.moving_mean_initializer)
        )
        self.renorm_stddev = self._add_state("renorm_stddev", shape, stddev_initializer)
        self.renorm_step = self._add_state(
            "renorm_step", (), "zeros", dtype=step_dtype(), aggregation="only_first_replica"
        )

    def _clip_value(self, bound, dtype="float32"):
        if isinstance(bound, float):
            return ops.convert_to_tensor(bound, dtype)
        return ops.cast(bound(self.renorm_step), dtype)

    def _batch_correction(self, per_example=False):
        """(batch mean, batch variance) -> (r, d), no gradient, against the renorm
        statistics read here (the function itself reads no variables).

        The statistics are per channel, or with `per_example` broadcast against the
        input (each example's ghost batch's).
        """
        renorm_mean = ops.convert_to_tensor(self.renorm_mean)
        # Guard against a zero moving stddev early on (as Keras).
        renorm_stddev = ops.maximum(ops.convert_to_tensor(self.renorm_stddev), self.epsilon**0.5)
        if per_example:
            renorm_mean = self._to_broadcast(renorm_mean)
            renorm_stddev = self._to_broadcast(renorm_stddev)
        rmax, dmax = self._clip_value(self.rmax), self._clip_value(self.dmax)
        # No batch averaged yet: with bias correction the first step is plain BN.
        first = ops.equal(self.renorm_step, 0) if self.renorm_bias_correction else None

        def correction(mean, variance):
            dtype = mean.dtype
            stddev = ops.sqrt(variance + self.epsilon)
            moving_stddev = ops.cast(renorm_stddev, dtype)
            r_max = ops.cast(rmax, dtype)
            d_max = ops.cast(dmax, dtype)
            r = ops.minimum(ops.maximum(stddev / moving_stddev, 1.0 / r_max), r_max)
            d = ops.minimum(
                ops.maximum((mean - ops.cast(renorm_mean, dtype)) / moving_stddev, -d_max), d_max
            )
            if first is not None:
                r = ops.where(first, ops.ones_like(r), r)
                d = ops.where(first, ops.zeros_like(d), d)
            return ops.stop_gradient(r), ops.stop_gradient(d)

        return correction

    @staticmethod
    def _compose(r, d, gamma, beta):
        # (x_hat * r + d) * gamma + beta == x_hat * (r * gamma) + (d * gamma + beta)
        if gamma is None:
            return r, d if beta is None else d + beta
        offset = d * gamma if beta is None else d * gamma + beta
        return r * gamma, offset

    def _training_affine(self, batch_mean, batch_variance, gamma, beta):
        if self._recalibrating:
            return gamma, beta
        return self._compose(*self._batch_correction()(batch_mean, batch_variance), gamma, beta)

    def _training_outputs(self, x, inputs, mask):
        if self.virtual_batch_size is None:
            return super()._training_outputs(x, inputs, mask)
        # Renorm over ghost batches: each normalized with its own statistics and
        # corrected with its own r and d.
        moments = self._ghost_moments(x, mask)
        gamma, beta = (self._to_broadcast(v) for v in self._gamma_beta(x.dtype))
        if self._recalibrating:
            self._update_moving_statistics(moments.batch_mean, moments.batch_variance)
        else:
            correction = self._batch_correction(per_example=True)
            r, d = correction(moments.mean, moments.variance)
            gamma, beta = self._compose(r, d, gamma, beta)
            # Each example carries its ghost batch's stddev: the mean over examples
            # is the mean of the ghost batches' stddevs, weighted by their sizes.
            stddev = mean(ops.sqrt(moments.variance + self.epsilon), self._reduction_axes)
            self._update_statistics(moments.batch_mean, stddev)
        return normalize(x, moments.mean, moments.variance, gamma, beta, self.epsilon)

    def _update_moving_statistics(self, batch_mean, batch_variance):
        if self._recalibrating:
            super()._update_moving_statistics(batch_mean, batch_variance)
            return
        self._update_statistics(batch_mean, ops.sqrt(batch_variance + self.epsilon))

    def _renorm_momentum_now(self):
        if not self.renorm_bias_correction:
            return self.renorm_momentum
        # The k-th update weighs the batch by (1 - a) / (1 - a^k): the variables
        # hold Adam's bias-corrected averages (the first batch replaces the
        # initial value).
        k = ops.cast(self.renorm_step + 1, "float32")
        a = self.renorm_momentum
        return 1.0 - (1.0 - a) / (1.0 - ops.power(a, k))

    def _update_statistics(self, mean, stddev):
        """Moving averages of the batch mean and stddev, and the step."""
        renorm_momentum = self._renorm_momentum_now()
        self._assign_moving_average(self.renorm_mean, mean, renorm_momentum)
        self._assign_moving_average(self.renorm_stddev, stddev, renorm_momentum)
        self._assign_moving_average(self.moving_mean, mean, self.momentum)
        # Keras keeps a moving_stddev weight that starts at sqrt(moving_variance) and
        # later equals sqrt(moving_variance + epsilon); so does this stddev.
        moving_stddev = ops.sqrt(
            self.moving_variance + ops.where(ops.equal(self.renorm_step, 0), 0.0, self.epsilon)
        )
        new_stddev = moving_stddev * self.momentum + ops.cast(stddev, moving_stddev.dtype) * (
            1.0 - self.momentum
        )
        self.moving_variance.assign(ops.relu(ops.square(new_stddev) - self.epsilon))
        self.renorm_step.assign_add(1)

    def get_config(self) -> dict[str, Any]:
        def serialize(original, resolved):
            if original is not None:
                return original
            return keras.saving.serialize_keras_object(resolved)

        config = {
            "rmax": serialize(self._rmax_config, self.rmax),
            "dmax": serialize(self._dmax_config, self.dmax),
            "renorm_momentum": self.renorm_momentum,
            "total_steps": self.total_steps,
            "virtual_batch_size": self.virtual_batch_size,
            "renorm_bias_correction": self.renorm_bias_correction,
        }
        return {**super().get_config(), **config}
