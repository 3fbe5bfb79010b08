"""Learning-rate schedules: linear warm-up, then cosine (Keras's), step or constant."""

import keras


@keras.saving.register_keras_serializable(package="bnkeras")
class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to `peak` over `warmup_steps`, then `peak` times
    `factor` ** (number of `boundaries` passed): the step schedule of the ImageNet
    recipes (boundaries at epochs 30, 60, 80); no boundaries gives a constant."""

    def __init__(self, peak, warmup_steps, boundaries=(), factor=0.1):
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)
        self.boundaries = [int(b) for b in boundaries]
        self.factor = float(factor)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        decayed = keras.ops.convert_to_tensor(self.peak, "float32")
        for boundary in self.boundaries:
            decayed = keras.ops.where(step >= boundary, decayed * self.factor, decayed)
        if self.warmup_steps:
            warm = self.peak * keras.ops.minimum(step / self.warmup_steps, 1.0)
            return keras.ops.where(step < self.warmup_steps, warm, decayed)
        return decayed

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "boundaries": self.boundaries,
            "factor": self.factor,
        }


def make_schedule(train_config, steps_per_epoch, peak):
    total = max(1, train_config["epochs"] * steps_per_epoch)
    warmup = min(train_config["warmup_epochs"] * steps_per_epoch, total - 1)
    kind = train_config["schedule"]
    if kind == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, total - warmup, warmup_target=peak, warmup_steps=warmup
            )
        return keras.optimizers.schedules.CosineDecay(peak, total)
    boundaries = (
        [e * steps_per_epoch for e in train_config["step_epochs"]] if kind == "step" else []
    )
    return WarmupPiecewiseConstant(peak, warmup, boundaries)
