"""Schedules for the clipping bounds `rmax` and `dmax` of batch renormalization."""

from typing import Any

import keras
from keras import ops

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

    def __init__(
        self, initial_value: float, final_value: float, start_step: int, end_step: int
    ) -> None:
        self.initial_value = as_float("initial_value", initial_value)
        self.final_value = as_float("final_value", final_value)
        self.start_step = as_int("start_step", start_step, minimum=0)
        self.end_step = as_int("end_step", end_step, minimum=self.start_step + 1)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        fraction = ops.clip(
            (step - self.start_step) / float(self.end_step - self.start_step), 0.0, 1.0
        )
        return self.initial_value + fraction * (self.final_value - self.initial_value)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_value": self.initial_value,
            "final_value": self.final_value,
            "start_step": self.start_step,
            "end_step": self.end_step,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "LinearRamp":
        return cls(**config)

    def __eq__(self, other):
        return type(other) is type(self) and other.get_config() == self.get_config()

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"LinearRamp({args})"


# The paper's warm-up, by argument name, in steps of its Inception-v3 runs
# (Ioffe, 2017, section 4.1: 50 workers x 32 examples, about 130k steps).
WARMUP = {
    "rmax": LinearRamp(1.0, 3.0, 5000, 40000),
    "dmax": LinearRamp(0.0, 5.0, 5000, 25000),
}
PAPER_RUN_STEPS = 130_000


def warmup(name, total_steps=None):
    """The paper's warm-up of `name` ("rmax" or "dmax").

    Without `total_steps`, in the paper's absolute steps (`WARMUP`). With it, laid
    out at the same fractions of a run of `total_steps` training steps as the
    paper's steps are of its ~130k-step runs: held until 5k/130k = 3.8% of the
    run, then linear to `dmax` 5 at 25k/130k = 19.2% and `rmax` 3 at
    40k/130k = 30.8% (steps rounded; a ramp lasts at least one step).
    `total_steps=130000` gives the paper's schedule exactly.
    """
    ramp = WARMUP[name]
    if total_steps is None:
        return ramp
    scale = total_steps / PAPER_RUN_STEPS
    start = round(ramp.start_step * scale)
    end = max(round(ramp.end_step * scale), start + 1)
    return LinearRamp(ramp.initial_value, ramp.final_value, start, end)


def describe(name, value):
    """One line about the clipping bound `name`, for logs."""
    if isinstance(value, LinearRamp):
        return (
            f"{name} {value.initial_value:g} until step {value.start_step}, then linear to "
            f"{value.final_value:g} at step {value.end_step}"
        )
    if isinstance(value, float):
        return f"{name} {value:g}"
    return f"{name} {value!r}"
