"""Schedules for the clipping bounds `rmax` and `dmax` of batch renormalization."""

import keras
import tensorflow as tf

from bnkeras.layers._utils import as_float, as_int


@keras.saving.register_keras_serializable(package="bnkeras")
class LinearRamp:
    """A value that holds `initial_value` until `start_step`, then moves linearly to
    `final_value` at `end_step` and stays there.

    The warm-up of Batch Renormalization (Ioffe, 2017, section 4) is
    `LinearRamp(1.0, 3.0, 5000, 40000)` for `rmax` and
    `LinearRamp(0.0, 5.0, 5000, 25000)` for `dmax`; `BatchRenormalization`
    uses these when given `rmax="warmup"` / `dmax="warmup"`.

    Args:
        initial_value: Value up to `start_step`.
        final_value: Value from `end_step` on.
        start_step: Training step (layer calls in training mode) where the ramp starts.
        end_step: Step where the ramp ends; must be greater than `start_step`.
    """

    def __init__(self, initial_value, final_value, start_step, end_step):
        self.initial_value = as_float("initial_value", initial_value)
        self.final_value = as_float("final_value", final_value)
        self.start_step = as_int("start_step", start_step, minimum=0)
        self.end_step = as_int("end_step", end_step, minimum=self.start_step + 1)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        fraction = tf.clip_by_value(
            (step - self.start_step) / float(self.end_step - self.start_step), 0.0, 1.0
        )
        return self.initial_value + fraction * (self.final_value - self.initial_value)

    def get_config(self):
        return {
            "initial_value": self.initial_value,
            "final_value": self.final_value,
            "start_step": self.start_step,
            "end_step": self.end_step,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"LinearRamp({args})"


# The paper's warm-up, by argument name.
WARMUP = {
    "rmax": LinearRamp(1.0, 3.0, 5000, 40000),
    "dmax": LinearRamp(0.0, 5.0, 5000, 25000),
}
