"""The user's own model in a run: a `.keras` classifier or a `keras.applications` network.

`build_external(model_config, norm_config, num_classes, input_shape, total_steps)`:

1. the model: `model.file` (a `.keras` file), or `model.name` =
   `keras.applications.NAME`, built with `weights=None` (nothing is downloaded) and
   `classifier_activation=None`; `model.weights` names a `.weights.h5` file of the
   user's to load into it (a file with another number of classes than the run's is
   loaded into the network built with that number: ImageNet's 1000, or the run's);
2. its head: the layer named `model.head`, else its last `Dense` layer or 1x1
   `Conv2D` over a 1x1 map (the classifier of MobileNet V1 and V3, flattened after
   it). The run trains on logits, so the new output is that layer's output without
   activation (flattened, for a convolution); when the number of classes differs,
   the head is a new layer of the head's kind of the run's classes on the same
   input (named `<head>_<classes>`). Layers after the head may only be activations
   or dropout, and a flatten or reshape after a convolution (they are dropped);
3. its norm layers converted to the run's norm with `bnkeras.convert_batchnorm`
   (the model's own epsilon is kept; the config's momentum and the norm's options
   are set), and with `norm.freeze` frozen with `bnkeras.freeze_batchnorm`.

The names of the new head's layers are returned with the model, for a lower
learning rate on the rest (`train.backbone_lr_multiplier`).
"""

import difflib
import inspect
from pathlib import Path

from bnkeras.errors import Error
from bnkeras.training.names import APPLICATIONS

_AFTER_HEAD = ("Activation", "Softmax", "Dropout")
_AFTER_CONV_HEAD = (*_AFTER_HEAD, "Flatten", "Reshape")  # its 1x1 map to a vector


class ModelSourceError(Error, ValueError):
    """A model file, application name, weights file or head that cannot be used."""


def is_external(model_config):
    return bool(model_config.get("file")) or str(model_config.get("name", "")).startswith(
        APPLICATIONS
    )


def application_names():
    import keras

    return sorted(n for n in dir(keras.applications) if n[:1].isupper())


def _application(name):
    import keras

    short = name[len(APPLICATIONS) :]
    builder = getattr(keras.applications, short, None) if short[:1].isupper() else None
    if builder is None:
        close = difflib.get_close_matches(short, application_names(), n=4, cutoff=0.5)
        hint = f" Did you mean {', '.join(APPLICATIONS + c for c in close)}?" if close else ""
        raise ModelSourceError(
            f"{name} is not a keras.applications model.{hint} The models: "
            f"{', '.join(application_names())}. Received: model.name={name}"
        )
    return builder


def _build_application(name, input_shape, classes, alpha=1.0):
    """keras.applications.NAME with weights=None (never a download); `alpha` (the width
    of MobileNet, V2 and V3) where the builder takes it."""
    builder = _application(name)
    options = {}
    if alpha != 1.0:
        if "alpha" not in inspect.signature(builder).parameters:
            raise ModelSourceError(
                f"{name} has no width multiplier: model.alpha applies to MobileNet, "
                f"MobileNetV2 and MobileNetV3. Received: model.alpha={alpha}"
            )
        options["alpha"] = alpha
    return builder(
        input_shape=tuple(input_shape),
        weights=None,
        classes=classes,
        classifier_activation=None,
        **options,
    )


def _load_weights(model, path, what):
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as error:  # what Keras raises for a mismatch
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise ModelSourceError(
            f"The weights file {path} does not match {what} ({type(error).__name__}: {first}). "
            "Give the .weights.h5 saved from this architecture (model.save_weights(...))."
        ) from None


def _check_weights_path(path):
    path = Path(path)
    if not path.is_file():
        raise ModelSourceError(
            f"The weights file {path} does not exist. Received: model.weights={path}"
        )
    if not path.name.endswith(".weights.h5"):
        raise ModelSourceError(
            f"model.weights must be a .weights.h5 file (saved with model.save_weights). "
            f"Received: model.weights={path}"
        )
    return path


def _source_model(model_config, input_shape, num_classes):
    weights = model_config.get("weights")
    if weights:
        weights = _check_weights_path(weights)
    if model_config.get("file"):
        from bnkeras.training.workdir import load_model_file

        model = load_model_file(model_config["file"])
        if weights:
            _load_weights(model, weights, model_config["file"])
        return model, f"{model_config['file']}"
    name, alpha = model_config["name"], float(model_config.get("alpha", 1.0))
    if not weights:
        return _build_application(name, input_shape, num_classes, alpha), name
    for classes in dict.fromkeys((num_classes, 1000)):  # the run's classes, else ImageNet's
        model = _build_application(name, input_shape, classes, alpha)
        try:
            model.load_weights(weights)
            return model, name
        except (ValueError, OSError, KeyError):  # try the next number of classes
            continue
    model = _build_application(name, input_shape, num_classes, alpha)
    _load_weights(model, weights, name)  # raises the mismatch, naming the file and the fix
    return model, name


def _check_io(model, source, input_shape):
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelSourceError(
            f"{source} has {len(model.inputs)} input(s) and {len(model.outputs)} output(s): "
            "bnkeras train trains classifiers with one image input and one output of logits."
        )
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or shape[-1] not in (None, 3):
        raise ModelSourceError(
            f"{source} takes inputs of shape {shape}: bnkeras train feeds RGB images "
            "(height, width, 3)."
        )
    size = input_shape[0]
    if any(side is not None and side != size for side in shape[:2]):
        raise ModelSourceError(
            f"{source} takes images of {shape[0]}x{shape[1]} pixels, the config "
            f"data.image_size={size}: set --set data.image_size={shape[0]} (or give a model "
            "that takes any size)."
        )


def _is_conv_head(layer):
    """A 1x1 `Conv2D` whose output is one pixel: a `Dense` layer over pooled features
    (MobileNet V1 and V3 classify with one)."""
    import keras

    return (
        type(layer) is keras.layers.Conv2D
        and tuple(layer.kernel_size) == (1, 1)
        and layer.groups == 1
        and tuple(d for d in layer.output.shape[1:] if d != 1) == (layer.filters,)
    )


def _head(model, source, name):
    import keras

    if name:
        try:
            return model.get_layer(name)
        except ValueError:
            raise ModelSourceError(
                f"{source} has no layer named {name}. Received: model.head={name}"
            ) from None
    heads = [
        layer
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense) or _is_conv_head(layer)
    ]
    if not heads:
        raise ModelSourceError(
            f"{source} has no classification head (no Dense layer, or 1x1 convolution over "
            "pooled features, at its top level): name the layer whose output is the logits "
            "with --set model.head=LAYER_NAME."
        )
    return heads[-1]


def _with_head(model, source, num_classes, head_name):
    """(the model with logits of `num_classes` from its head, names of new layers)."""
    import keras

    head = _head(model, source, head_name)
    conv = _is_conv_head(head)
    after = model.layers[model.layers.index(head) + 1 :]
    allowed = _AFTER_CONV_HEAD if conv else _AFTER_HEAD
    others = [layer.name for layer in after if type(layer).__name__ not in allowed]
    if others:
        raise ModelSourceError(
            f"{source}: the layers after its head {head.name} ({', '.join(others)}) are not "
            "activations or dropout, so the head is not the model's last layer: name the head "
            "with --set model.head=LAYER_NAME, or give a model that ends with it."
        )
    linear = head.activation in (None, keras.activations.linear)
    units = head.filters if conv else getattr(head, "units", None)
    if units == num_classes and linear and not after and not conv:
        return model, []
    features = head.input
    if units == num_classes:  # the same head without its activation: its weights kept
        config = {**head.get_config(), "activation": "linear", "name": f"{head.name}_logits"}
        new = type(head).from_config(config)
        outputs = new(features)
        new.set_weights(head.get_weights())
    elif conv:
        new = keras.layers.Conv2D(num_classes, 1, name=f"{head.name}_{num_classes}")
        outputs = new(features)
    else:
        new = keras.layers.Dense(num_classes, name=f"{head.name}_{num_classes}")
        outputs = new(features)
    names = [new.name]
    if conv:
        flatten = keras.layers.Flatten(name=f"{new.name}_flat")
        outputs = flatten(outputs)
        names.append(flatten.name)
    return keras.Model(model.inputs[0], outputs, name=model.name), names


def build_external(model_config, norm, num_classes, input_shape, freeze=False):
    """(model, names of its new head layers); `norm` is (name, options) for
    `bnkeras.convert_batchnorm`, or None to keep the model's norm layers."""
    import bnkeras

    model, source = _source_model(model_config, input_shape, num_classes)
    _check_io(model, source, input_shape)
    model, head = _with_head(model, source, num_classes, model_config.get("head"))
    if norm is not None:
        name, options = norm
        model = bnkeras.convert_batchnorm(model, name, **options)
    if freeze:
        bnkeras.freeze_batchnorm(model)
    return model, head
