"""The norm-layer factory: models take a norm, they never hard-code one.

`get_norm("bn" | "renorm" | "ghost" | "keras" | "none", **options)` returns a
callable `make(name=...) -> Layer` (or None for "none"); a model calls it once per
norm it needs, so one model definition serves every norm.
"""

import functools

import keras

import bnkeras
from bnkeras.training.names import NORMS


def get_norm(
    name,
    *,
    momentum=0.99,
    epsilon=1e-3,
    synchronized=False,
    virtual_batch_size=32,
    rmax="warmup",
    dmax="warmup",
    renorm_momentum=0.99,
):
    """A norm-layer maker for `name`; None for "none" (models then give convs a bias)."""
    common = {"momentum": momentum, "epsilon": epsilon, "synchronized": synchronized}
    if name == "none":
        return None
    if name == "bn":
        return functools.partial(bnkeras.BatchNormalization, **common)
    if name == "keras":
        return functools.partial(keras.layers.BatchNormalization, **common)
    if name == "renorm":
        return functools.partial(
            bnkeras.BatchRenormalization,
            rmax=rmax,
            dmax=dmax,
            renorm_momentum=renorm_momentum,
            **common,
        )
    if name == "ghost":
        return functools.partial(
            bnkeras.GhostBatchNormalization, virtual_batch_size=virtual_batch_size, **common
        )
    raise ValueError(f"Unknown norm {name!r}: valid norms are {', '.join(NORMS)}.")
