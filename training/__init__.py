"""bnkeras.training: configs, data, models and the trainer behind `bnkeras train`.

from bnkeras.training import build_config, train_and_evaluate
train_and_evaluate(build_config("demo", ["train.epochs=2"]), "runs/demo")
"""


def __getattr__(name):  # lazy: importing bnkeras.training stays light
    if name in ("train_and_evaluate", "evaluate"):
        from bnkeras._backend import require_tensorflow

        require_tensorflow(f"bnkeras.training.{name} (tf.data, tf.distribute)")
    if name in ("train_and_evaluate", "TrainingError"):
        from bnkeras.training import trainer

        return getattr(trainer, name)
    if name in ("build_config", "ConfigError"):
        from bnkeras.training import config

        return getattr(config, name)
    if name == "evaluate":
        from bnkeras.training.evaluate import evaluate

        return evaluate
    raise AttributeError(f"module 'bnkeras.training' has no attribute {name!r}")


__all__ = ["ConfigError", "TrainingError", "build_config", "evaluate", "train_and_evaluate"]
