"""`bnkeras.recalibrate_batchnorm`: precise BN (Wu & Johnson, 2021, section 3).

The moving averages of BN are an exponential average over recent training
batches, computed while the weights were still changing. Precise BN recomputes
them with the weights frozen, as true averages over N batches: after the call,
`moving_mean` is the mean of the N per-batch means of the layer's input and
`moving_variance` the mean of the N per-batch variances.
"""

import contextlib
from collections.abc import Iterable
from typing import Any

import keras
from keras import ops

from bnkeras.errors import Error
from bnkeras.layers._utils import as_int
from bnkeras.layers.base import BatchNormBase
from bnkeras.model_layers import bn_layers


class RecalibrationError(Error, ValueError):
    """A dataset that `recalibrate_batchnorm` cannot read as batches of the model's inputs."""


def recalibrate_batchnorm(model: keras.Model, dataset: Iterable[Any], num_batches: int) -> int:
    """Recomputes the moving statistics of every BN layer of `model` as true averages.

    Args:
        model: A Keras model with `keras.layers.BatchNormalization` and/or bnkeras
            BN-family layers (nested models too).
        dataset: An iterable of batches: `inputs` or `(inputs, targets, ...)`
            tuples (a `tf.data.Dataset` as given to `fit`). Targets are ignored.
        num_batches: Integer >= 1, how many batches to average over (e.g. 100-200).

    Returns:
        The number of batches used (fewer when the dataset ends first).

    Raises:
        RecalibrationError: (a `bnkeras.Error`) for a `dataset` that is an array or a
            tuple of arrays instead of batches, or whose first batch does not match the
            model's inputs (their count, rank or fixed sizes).

    The forward passes run in training mode with every BN layer as plain BN on its
    batch statistics: batch renormalization (bnkeras's, and Keras's
    `renorm=True`) leaves out its `r`, `d` correction, whose reference statistics
    are the moving averages being replaced. Every other weight and state
    (trainable weights, renorm's `renorm_*` statistics and step, other layers'
    state) is left exactly as it was; Keras's renorm `moving_stddev` becomes
    `sqrt(moving_variance + epsilon)`, so that training continues from the new
    statistics. BN layers with `trainable=False` are left alone (frozen, as in
    Keras). Runs eagerly, one forward pass per batch. If the dataset or the model
    raises, every variable is restored.
    """
    num_batches = as_int("num_batches", num_batches, minimum=1)
    _check_dataset(dataset)
    layers = [layer for layer in bn_layers(model) if layer.trainable]
    if not layers:
        return 0
    saved = [(v, ops.copy(v.value)) for v in model.variables]
    recalibrated = {id(v) for layer in layers for v in _recalibrated_variables(layer)}
    used = 0
    try:
        with contextlib.ExitStack() as stack:
            for layer in layers:
                stack.enter_context(_as_plain_batch_normalization(layer))
            for batch in dataset:
                if used == num_batches:
                    break
                inputs = batch[0] if isinstance(batch, tuple) else batch
                if not used:
                    _check_inputs(model, inputs, batch)
                used += 1
                # Momentum 1 - 1/k turns the exponential average into the running
                # mean of the k batches seen so far (the first replaces the old value).
                for layer in layers:
                    layer.momentum = 1.0 - 1.0 / used
                model(inputs, training=True)
    except BaseException:
        for variable, value in saved:
            variable.assign(value)
        raise
    for variable, value in saved:
        if id(variable) not in recalibrated:
            variable.assign(value)
    for layer in layers:
        if _is_keras_renorm(layer):
            layer.moving_stddev.assign(ops.sqrt(layer.moving_variance + layer.epsilon))
    return used


def _describe(value):
    """A short description of a batch or a dataset (never the values themselves)."""
    if isinstance(value, (tuple, list)):
        kind = type(value).__name__
        return f"a {kind} of {len(value)} ({', '.join(_describe(v) for v in value[:4])})"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))[:8]}"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    return type(value).__name__


def _is_array(value):
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _check_dataset(dataset):
    """Refuses what is not an iterable of batches: an array (or a tuple of arrays)."""
    whole = _is_array(dataset) or (
        isinstance(dataset, (tuple, dict))
        and dataset
        and all(_is_array(a) for a in (dataset.values() if isinstance(dataset, dict) else dataset))
    )
    if whole or not hasattr(dataset, "__iter__"):
        raise RecalibrationError(
            "Argument `dataset` of recalibrate_batchnorm must be an iterable of batches, e.g. "
            "tf.data.Dataset.from_tensor_slices(x).batch(64) (or a list of arrays, one per "
            f"batch). Received: dataset={_describe(dataset)}"
        )


def _check_inputs(model, inputs, batch):
    """Refuses a first batch whose inputs do not match the model's inputs."""
    expected = model.inputs or []
    given = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    if isinstance(inputs, dict) or not expected or not all(_is_array(x) for x in given):
        return  # named inputs or an unbuilt model: Keras judges them
    if len(given) != len(expected):
        hint = ""
        if isinstance(batch, tuple) and len(expected) > 1:
            hint = (
                " A tuple batch is read as (inputs, targets, ...): give each batch as "
                "((x1, x2, ...),) or ((x1, x2, ...), targets)."
            )
        elif isinstance(batch, list):
            hint = " A list batch is read as the inputs: give (inputs, targets) as a tuple."
        raise RecalibrationError(
            f"The model has {len(expected)} input(s) but each batch gives {len(given)}.{hint} "
            f"Received: batch={_describe(batch)}"
        )
    for x, spec in zip(given, expected, strict=True):
        shape, want = tuple(x.shape), tuple(spec.shape)
        if len(shape) != len(want) or any(
            w is not None and s is not None and s != w
            for s, w in zip(shape[1:], want[1:], strict=True)
        ):
            raise RecalibrationError(
                f"A batch does not fit the model's input {spec.name!r} of shape {want} "
                f"(None: any size; the first axis is the batch). Received: batch={_describe(batch)}"
            )


def _is_keras_renorm(layer):
    return isinstance(layer, keras.layers.BatchNormalization) and layer.renorm


def _recalibrated_variables(layer):
    extra = [layer.moving_stddev] if _is_keras_renorm(layer) else []
    return [layer.moving_mean, layer.moving_variance, *extra]


@contextlib.contextmanager
def _as_plain_batch_normalization(layer):
    """Within: `layer` trains as plain BN with BN's moving-average update; its
    momentum and mode are restored on exit."""
    momentum = layer.momentum
    keras_renorm = _is_keras_renorm(layer)
    if keras_renorm:
        layer.renorm = False
    elif isinstance(layer, BatchNormBase):
        layer._recalibrating = True
    try:
        yield
    finally:
        layer.momentum = momentum
        if keras_renorm:
            layer.renorm = True
        elif isinstance(layer, BatchNormBase):
            layer._recalibrating = False
