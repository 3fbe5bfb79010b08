"""The bnkeras batch-normalization layers, one public layer per file."""

from bnkeras.layers.batch_normalization import BatchNormalization
from bnkeras.layers.batch_renormalization import BatchRenormalization
from bnkeras.layers.channel_affine import ChannelAffine
from bnkeras.layers.ghost_batch_normalization import GhostBatchNormalization
from bnkeras.layers.renorm_schedules import LinearRamp

__all__ = [
    "BatchNormalization",
    "BatchRenormalization",
    "ChannelAffine",
    "GhostBatchNormalization",
    "LinearRamp",
]
