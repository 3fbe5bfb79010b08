"""bnkeras: batch normalization done right for Keras 3, from training to deployment."""

from bnkeras.layers import (
    BatchNormalization,
    BatchRenormalization,
    ChannelAffine,
    GhostBatchNormalization,
    LinearRamp,
)

__version__ = "0.1.0"

__all__ = [
    "BatchNormalization",
    "BatchRenormalization",
    "ChannelAffine",
    "GhostBatchNormalization",
    "LinearRamp",
    "__version__",
]
