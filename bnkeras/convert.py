"""Putting another norm into an existing model, and freezing BN for fine-tuning.

`convert_batchnorm(model, norm=...)` is Keras's missing counterpart of PyTorch's
`SyncBatchNorm.convert_sync_batchnorm`: a new model in which every BN-family layer
(`keras.layers.BatchNormalization`, with or without `renorm`, and bnkeras's three)
is replaced by the named norm, weights carried; every other layer is a copy with
its weights. `freeze_batchnorm(model)` is timm's `freeze_batch_norm_2d`: BN layers
normalize with their moving statistics and keep them, while the rest trains.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import keras
import numpy as np

from bnkeras._compat import is_graph_model
from bnkeras.errors import Error
from bnkeras.model_layers import BN_TYPES, bn_layers, iter_layers
from bnkeras.norms import CONVERTIBLE_NORMS, norm_class

logger = logging.getLogger(__name__)

# The arguments that every BN-family layer takes with the same meaning: carried from
# the layer replaced (its normalization axis, epsilon, affine parameters, ... and name).
_CARRIED = (
    "name",
    "trainable",
    "dtype",
    "axis",
    "momentum",
    "epsilon",
    "center",
    "scale",
    "beta_initializer",
    "gamma_initializer",
    "moving_mean_initializer",
    "moving_variance_initializer",
    "beta_regularizer",
    "gamma_regularizer",
    "beta_constraint",
    "gamma_constraint",
    "synchronized",
)


class ConvertError(Error, ValueError):
    """A model or option that `convert_batchnorm` cannot take; the message says why."""


def _target_config(layer, options):
    config = layer.get_config()
    carried = {key: config[key] for key in _CARRIED if key in config}
    if isinstance(carried.get("axis"), (list, tuple)):
        if len(carried["axis"]) != 1:
            raise ConvertError(
                f"{layer.name} normalizes over several axes {carried['axis']}: the bnkeras "
                "norms normalize one channel axis. Received: axis="
                f"{carried['axis']}"
            )
        carried["axis"] = carried["axis"][0]
    return {**carried, **options}


def _stddev(layer):
    """The renorm stddev to start from: sqrt(moving_variance + epsilon), the stddev that
    the batches' are compared with (Keras's and bnkeras's renorm track that)."""
    return np.sqrt(np.asarray(layer.moving_variance, np.float64) + layer.epsilon)


def _carry(source, target):
    """Assigns the statistics and affine parameters of `source` to `target` (built)."""
    values = {
        "moving_mean": np.asarray(source.moving_mean),
        "moving_variance": np.asarray(source.moving_variance),
    }
    if getattr(source, "gamma", None) is not None:
        values["gamma"] = np.asarray(source.gamma)
    if getattr(source, "beta", None) is not None:
        values["beta"] = np.asarray(source.beta)
    has_renorm = getattr(source, "renorm_mean", None) is not None
    values["renorm_mean"] = np.asarray(source.renorm_mean) if has_renorm else values["moving_mean"]
    values["renorm_stddev"] = np.asarray(source.renorm_stddev) if has_renorm else _stddev(source)
    values["moving_stddev"] = (
        np.asarray(source.moving_stddev)
        if getattr(source, "moving_stddev", None) is not None
        else _stddev(source)
    )
    if getattr(source, "renorm_step", None) is not None:
        values["renorm_step"] = np.asarray(source.renorm_step)
    for name, value in values.items():
        variable = getattr(target, name, None)
        if variable is not None:
            variable.assign(np.asarray(value).astype(variable.dtype))


def _holds_bn(layer):
    return any(isinstance(inner, BN_TYPES) for inner in iter_layers(layer))


def convert_batchnorm(model: keras.Model, norm: str = "bn", **options: Any) -> keras.Model:
    """A new model with every BN-family layer replaced by the norm `norm`.

    Every `keras.layers.BatchNormalization` (with or without `renorm=True`) and
    every bnkeras BN-family layer of `model` (nested Functional and Sequential
    models included, a shared layer replaced once and still shared) becomes a
    layer of `norm`:

    - `"bn"`: `bnkeras.BatchNormalization` (TensorFlow's fused kernel);
    - `"renorm"`: `bnkeras.BatchRenormalization` (options: `rmax`, `dmax`,
      `renorm_momentum`, `total_steps`, ...);
    - `"ghost"`: `bnkeras.GhostBatchNormalization` (option `virtual_batch_size`);
    - `"keras"`: `keras.layers.BatchNormalization` (options such as `renorm=True`),
      so that a model trained with bnkeras can be used without bnkeras.

    The new layer keeps the replaced layer's name, axis, epsilon, momentum,
    `center`/`scale`, initializers, regularizers, constraints, dtype policy and
    `trainable` flag (an option given here overrides them), and its `gamma`,
    `beta`, `moving_mean` and `moving_variance`: in inference the new model
    computes what `model` computes, to float32 rounding. Batch renorm's own
    statistics are carried from a renorm layer; from any other they start at the
    moving statistics (`renorm_mean = moving_mean`, `renorm_stddev =
    sqrt(moving_variance + epsilon)`), so that the first training steps
    correct the batches towards the statistics the model was trained with; its
    clipping schedule (`renorm_step`) starts at 0 unless it was a bnkeras renorm
    layer. Every other layer is a copy with its weights; `model` itself is not
    changed and shares no layer with the result.

    A BN layer inside a subclassed layer or model cannot be replaced from
    outside: it is kept (a copy) and named in a `UserWarning`. The result is not
    compiled.

    Args:
        model: a Functional or Sequential Keras model.
        norm: `"bn"`, `"renorm"`, `"ghost"` or `"keras"`.
        **options: arguments of the new layers' constructor.

    Returns:
        The new model.

    Raises:
        ConvertError: `norm` is unknown, an option is not an argument of the new
            layer, or `model` is a subclassed model.
    """
    if norm not in CONVERTIBLE_NORMS:
        raise ConvertError(
            f"Unknown norm: valid norms are {', '.join(CONVERTIBLE_NORMS)}. Received: norm={norm!r}"
        )
    if not is_graph_model(model):
        raise ConvertError(
            f"convert_batchnorm takes a Functional or Sequential model; {model!r} is "
            f"{'a subclassed model' if isinstance(model, keras.Model) else 'not a Keras model'}: "
            "its layers cannot be replaced from outside (build it with the norm layer injected)."
        )
    cls = norm_class(norm)
    pairs, kept = [], []

    def clone(layer):
        if isinstance(layer, BN_TYPES):
            try:
                new = cls.from_config(_target_config(layer, options))
            except TypeError as error:
                raise ConvertError(
                    f"{error}: an option of convert_batchnorm is not an argument of "
                    f"{cls.__name__}. Received: {', '.join(options) or 'no options'}"
                ) from None
        else:
            if _holds_bn(layer):
                kept.extend(f"{layer.name}/{bn.name}" for bn in bn_layers(layer))
            new = layer.__class__.from_config(layer.get_config())
        pairs.append((layer, new))
        return new

    converted = keras.models.clone_model(model, clone_function=clone, recursive=True)
    for source, target in pairs:
        if isinstance(source, BN_TYPES):
            _carry(source, target)
        elif isinstance(source, keras.layers.Layer):  # not an op such as keras.ops.add
            target.set_weights(source.get_weights())
    replaced = sum(isinstance(s, BN_TYPES) for s, _ in pairs)
    logger.info("convert_batchnorm: %d BN layer(s) replaced by %s", replaced, cls.__name__)
    if kept:
        warnings.warn(
            f"convert_batchnorm: {len(kept)} BN layer(s) inside subclassed layers were kept "
            f"as they are (they cannot be replaced from outside): {', '.join(kept[:10])}",
            UserWarning,
            stacklevel=2,
        )
    return converted


def freeze_batchnorm(model: keras.Model) -> keras.Model:
    """Freezes every BN-family layer of `model` (in place) for fine-tuning; returns it.

    Each BN layer (nested models and sublayers of custom layers included) gets
    `trainable = False`: in Keras 3 such a layer normalizes with its moving
    statistics even in a training step, does not update them, and its `gamma`
    and `beta` are not trained, while every other layer trains as before. This is
    the fine-tuning convention (timm's `freeze_batch_norm_2d`): a small
    fine-tuning batch does not overwrite the statistics of the pretrained model.

    Interaction with Keras's own `trainable`: `model.trainable = False` freezes
    every layer (BN included); `freeze_batchnorm` only the BN layers. Setting a
    BN layer's `trainable = True` again unfreezes it. Compile (again) after
    freezing: Keras collects the trainable weights when it builds the train step.
    """
    layers = bn_layers(model)
    for layer in layers:
        layer.trainable = False
    logger.info("freeze_batchnorm: %d BN layer(s) frozen", len(layers))
    return model


__all__ = ["ConvertError", "convert_batchnorm", "freeze_batchnorm"]
