"""The bnkeras batch-normalization layers, one public layer per file."""

try:
    import tensorflow  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "tensorflow":
        raise
    raise ImportError(
        "bnkeras needs TensorFlow, which it does not install by itself so that it never "
        "replaces a build you have: install one with `pip install 'bnkeras[cpu]'` (CPU), "
        "`pip install 'bnkeras[gpu]'` (NVIDIA GPU) or `pip install tensorflow`."
    ) from None

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
