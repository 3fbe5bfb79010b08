"""Classifier models; every one takes its norm layer as an argument.

`build_model(model_config, norm_config, num_classes, input_shape)` builds any
model named in MODELS with the norm named in `norm_config["name"]`.
"""

from bnkeras.convert import freeze_batchnorm
from bnkeras.training.config import ConfigError
from bnkeras.training.models.external import build_external, is_external
from bnkeras.training.models.mobilenet_v2 import mobilenet_v2
from bnkeras.training.models.norms import NORMS, get_norm
from bnkeras.training.models.resnet import resnet
from bnkeras.training.models.resnet_cifar import cifar_resnet
from bnkeras.training.names import CIFAR_DEPTHS, MODELS


def norm_from_config(norm_config, total_steps=None):
    options = {k: v for k, v in norm_config.items() if k not in ("name", "sync", "freeze")}
    if options.get("total_steps") is None:  # the config's steps win over the run's
        options["total_steps"] = total_steps
    return get_norm(norm_config["name"], synchronized=bool(norm_config.get("sync")), **options)


def conversion_from_config(norm_config, total_steps=None):
    """(norm, options) for `bnkeras.convert_batchnorm` of a model of the user's: the
    config's momentum, sync and the norm's own options; the model's epsilon is kept
    (it is part of what the model computes)."""
    name = norm_config["name"]
    if name == "none":
        raise ConfigError(
            "norm.name none removes the norm layers of our models; a model of yours keeps its "
            "own: choose bn, renorm, ghost or keras. Received: norm.name=none"
        )
    maker = norm_from_config(norm_config, total_steps)
    options = {k: v for k, v in maker.keywords.items() if k != "epsilon"}
    return name, options


def build_model(model_config, norm_config, num_classes, input_shape, total_steps=None):
    """`total_steps`: the run's length, for schedules laid out over the run (renorm).

    A model of the user's (`model.file`, or `model.name` keras.applications.NAME)
    comes from `bnkeras.training.models.external`, its norm layers converted.
    `norm.freeze` freezes the BN layers of any model (`bnkeras.freeze_batchnorm`).
    """
    freeze = bool(norm_config.get("freeze"))
    if is_external(model_config):
        norm = conversion_from_config(norm_config, total_steps)
        model, _ = build_external(model_config, norm, num_classes, input_shape, freeze)
        return model
    model = _build_ours(model_config, norm_config, num_classes, input_shape, total_steps)
    if freeze:
        freeze_batchnorm(model)
    return model


def _build_ours(model_config, norm_config, num_classes, input_shape, total_steps):
    name = model_config["name"]
    norm = norm_from_config(norm_config, total_steps)
    zero_init = bool(model_config.get("zero_init_residual"))
    if name in ("resnet18", "resnet34", "resnet50"):
        return resnet(int(name[6:]), num_classes, input_shape, norm, zero_init)
    if name == "mobilenet_v2":
        return mobilenet_v2(
            num_classes, input_shape, norm, alpha=float(model_config.get("alpha", 1.0))
        )
    if name.startswith("resnet") and int(name[6:]) in CIFAR_DEPTHS:
        return cifar_resnet(
            int(name[6:]),
            num_classes,
            input_shape,
            norm,
            width=int(model_config.get("width", 16)),
            zero_init_residual=zero_init,
        )
    raise ValueError(f"Unknown model {name!r}: valid models are {', '.join(MODELS)}.")


__all__ = ["MODELS", "NORMS", "build_model", "cifar_resnet", "get_norm", "mobilenet_v2", "resnet"]
