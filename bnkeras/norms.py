"""The norm layers by name: the one factory that models, the trainer and the converter use.

`get_norm("bn" | "renorm" | "ghost" | "keras" | "none", **options)` returns a
callable `make(name=...) -> Layer` (or None for "none"); a model calls it once per
norm it needs, so one model definition serves every norm. `norm_class(name)` is
the layer class of a name (`bnkeras.convert_batchnorm` builds its layers from it).
This module imports neither Keras nor TensorFlow until a norm is asked for (the
command line lists `NORMS` without them).
"""

import functools
import logging

logger = logging.getLogger(__name__)

NORMS = ("bn", "renorm", "ghost", "keras", "none")
CONVERTIBLE_NORMS = ("bn", "renorm", "ghost", "keras")  # the norms that are a layer


def norm_class(name):
    """The layer class of the norm `name` (one of `CONVERTIBLE_NORMS`)."""
    import keras

    import bnkeras

    classes = {
        "bn": bnkeras.BatchNormalization,
        "renorm": bnkeras.BatchRenormalization,
        "ghost": bnkeras.GhostBatchNormalization,
        "keras": keras.layers.BatchNormalization,
    }
    if name not in classes:
        raise ValueError(
            f"Unknown norm layer: valid names are {', '.join(classes)}. Received: name={name!r}"
        )
    return classes[name]


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
    total_steps=None,
    renorm_bias_correction=False,
):
    """A norm-layer maker for `name`; None for "none" (models then give convs a bias).

    For "renorm", `total_steps` (the run's length in training steps) lays out the
    paper's "warmup" schedules of `rmax`/`dmax` as fractions of the run (see
    `bnkeras.BatchRenormalization`); it is ignored when neither is "warmup".
    The schedule is logged.
    """
    common = {"momentum": momentum, "epsilon": epsilon, "synchronized": synchronized}
    if name == "none":
        return None
    if name == "bn":
        return functools.partial(norm_class("bn"), **common)
    if name == "keras":
        return functools.partial(norm_class("keras"), **common)
    if name == "renorm":
        options = {
            "rmax": rmax,
            "dmax": dmax,
            "renorm_momentum": renorm_momentum,
            "renorm_bias_correction": renorm_bias_correction,
            **common,
        }
        if "warmup" in (rmax, dmax):
            options["total_steps"] = total_steps
        make = functools.partial(norm_class("renorm"), **options)
        _log_renorm_schedule(make())
        return make
    if name == "ghost":
        return functools.partial(
            norm_class("ghost"), virtual_batch_size=virtual_batch_size, **common
        )
    raise ValueError(f"Unknown norm {name!r}: valid norms are {', '.join(NORMS)}.")


def _log_renorm_schedule(layer):
    from bnkeras.layers.renorm_schedules import describe

    steps = layer.total_steps
    logger.info(
        "batch renorm clipping (%s): %s; %s; renorm_momentum %g%s",
        f"warm-up over a run of {steps} steps" if steps else "absolute steps",
        describe("rmax", layer.rmax),
        describe("dmax", layer.dmax),
        layer.renorm_momentum,
        ", bias-corrected" if layer.renorm_bias_correction else "",
    )
