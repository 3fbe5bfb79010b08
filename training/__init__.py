"""bnkeras.training: configs, data, models and the trainer behind `bnkeras train`.

from bnkeras.training import build_config, train_and_evaluate
train_and_evaluate(build_config("demo", ["train.epochs=2"]), "runs/demo")
"""

import importlib

# public name -> the submodule defining it, imported on first access (PEP 562): importing
# bnkeras.training stays light. No public name is also a submodule's name (the import
# system would replace the function by the submodule once that is imported).
_PUBLIC = {
    "ConfigError": "config",
    "TrainingError": "trainer",
    "build_config": "config",
    "evaluate": "evaluation",
    "train_and_evaluate": "trainer",
}
_NEED_TENSORFLOW = ("train_and_evaluate", "evaluate")

__all__ = [*sorted(_PUBLIC)]


def __getattr__(name):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name in _NEED_TENSORFLOW:
        from bnkeras._backend import require_tensorflow

        require_tensorflow(f"bnkeras.training.{name} (tf.data, tf.distribute)")
    return getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)


def __dir__():
    return sorted({*globals(), *_PUBLIC})
