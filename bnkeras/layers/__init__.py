"""The bnkeras batch-normalization layers, one public layer per file."""

try:
    import keras  # noqa: F401  (imports the backend named by KERAS_BACKEND)
except ModuleNotFoundError as error:
    missing = (error.name or "").split(".")[0]
    if missing not in ("tensorflow", "jax", "jaxlib", "torch"):
        raise
    raise ImportError(
        f"Keras's backend needs {missing}, which bnkeras does not install by itself so "
        "that it never replaces a build you have: install TensorFlow with "
        "`pip install 'bnkeras[cpu]'` (CPU), `pip install 'bnkeras[gpu]'` (NVIDIA GPU) or "
        "`pip install tensorflow`; or JAX with `pip install 'bnkeras[jax]'` and set "
        "KERAS_BACKEND=jax."
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
