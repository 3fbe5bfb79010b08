"""bnkeras: batch normalization done right for Keras 3, from training to deployment."""

import contextlib
import importlib
import importlib.abc
import importlib.util
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


class _RegisterLayersWithKeras(importlib.abc.MetaPathFinder):
    """Imports bnkeras.layers (which registers the layers with Keras) right after Keras.

    `import bnkeras` stays light (the `bnkeras` command answers `--help` without
    TensorFlow), yet `.keras` files holding bnkeras layers load with
    `keras.saving.load_model` once `bnkeras` is imported, whichever of the two a program
    imports first. It acts once, on the import of `keras`, and then leaves `sys.meta_path`.
    """

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("keras")  # what the other finders give
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            # Without what the layers need (TensorFlow), `import keras` still works; the
            # error comes with the first use of a layer (bnkeras.BatchNormalization).
            with contextlib.suppress(ImportError):
                importlib.import_module("bnkeras.layers")

        spec.loader.exec_module = exec_then_register
        return spec


def _remove_hook():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterLayersWithKeras)]


if "keras" in sys.modules:  # Keras (and so TensorFlow) is imported already: register now
    importlib.import_module("bnkeras.layers")
elif not any(isinstance(f, _RegisterLayersWithKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterLayersWithKeras())
