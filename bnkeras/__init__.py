"""bnkeras: batch normalization done right for Keras 3, from training to deployment."""

from bnkeras.layers import (
    BatchNormalization,
    BatchRenormalization,
    ChannelAffine,
    GhostBatchNormalization,
    LinearRamp,
)
from bnkeras.recalibrate import recalibrate_batchnorm

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "BatchRenormalization",
    "ChannelAffine",
    "GhostBatchNormalization",
    "LinearRamp",
    "__version__",
    "recalibrate_batchnorm",
]


def __getattr__(name):
    # `bnkeras.export.fold_batchnorm(...)` and `bnkeras.training...` work after a plain
    # `import bnkeras`; the subpackages are imported on first use.
    if name in ("export", "training"):
        import importlib

        return importlib.import_module(f"bnkeras.{name}")
    raise AttributeError(f"module 'bnkeras' has no attribute {name!r}")
