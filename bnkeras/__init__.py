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
