"""`bnkeras.recalibrate_batchnorm`: precise BN (Wu & Johnson, 2021, section 3).

The moving averages of BN are an exponential average over recent training
batches, computed while the weights were still changing. Precise BN recomputes
them with the weights frozen, as true averages over N batches: after the call,
`moving_mean` is the mean of the N per-batch means of the layer's input and
`moving_variance` the mean of the N per-batch variances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

import keras
import tensorflow as tf

from bnkeras.layers._utils import as_int
from bnkeras.layers.base import BatchNormBase
from bnkeras.model_layers import bn_layers


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
    layers = [layer for layer in bn_layers(model) if layer.trainable]
    if not layers:
        return 0
    saved = [(v, tf.identity(v.value)) for v in model.variables]
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
            layer.moving_stddev.assign(tf.sqrt(layer.moving_variance + layer.epsilon))
    return used


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
