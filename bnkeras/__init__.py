"""bnkeras: batch normalization done right for Keras 3, from training to deployment."""

import importlib
import os
import sys

from bnkeras.errors import Error

__version__ = "0.1.0"

# public name -> the module defining it; imported on first attribute access. The layers are
# the names of bnkeras.layers.__all__, listed again here because importing bnkeras.layers
# imports TensorFlow (tests/test_packaging.py checks that the two lists agree).
_PUBLIC = {
    "BatchNormalization": "bnkeras.layers",
    "BatchRenormalization": "bnkeras.layers",
    "ChannelAffine": "bnkeras.layers",
    "GhostBatchNormalization": "bnkeras.layers",
    "LinearRamp": "bnkeras.layers",
    "convert_batchnorm": "bnkeras.convert",
    "freeze_batchnorm": "bnkeras.convert",
    "recalibrate_batchnorm": "bnkeras.recalibrate",
}
_SUBPACKAGES = ("export", "training")

__all__ = ["Error", *sorted(_PUBLIC), "__version__"]


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"bnkeras.{name}")
    raise AttributeError(f"module 'bnkeras' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *_PUBLIC, *_SUBPACKAGES})


def _started_as_the_command():
    """True while `bnkeras ...` or `python -m bnkeras ...` imports this package.

    The command builds its parser and answers `--help` without TensorFlow, and sets
    TensorFlow's logging environment before importing it; it imports what it runs.
    """
    if sys.argv and sys.argv[0] == "-m":  # runpy resolving `python -m bnkeras[.x]`
        argv = list(getattr(sys, "orig_argv", ()))
        return "-m" in argv[:-1] and argv[argv.index("-m") + 1].split(".")[0] == "bnkeras"
    script = os.path.basename(sys.argv[0]) if sys.argv else ""
    return os.path.splitext(script)[0] == "bnkeras"  # the console script (bnkeras.exe on Windows)


# True in the `bnkeras` command: it imports the layers (and TensorFlow) when it runs.
_COMMAND_LINE = _started_as_the_command()
if not _COMMAND_LINE:
    # Importing the layers registers them with Keras, so `.keras` files holding bnkeras
    # layers load with `keras.saving.load_model` once `bnkeras` is imported.
    importlib.import_module("bnkeras.layers")
