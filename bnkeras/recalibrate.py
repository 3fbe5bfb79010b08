"""`bnkeras.recalibrate_batchnorm`: precise BN (Wu & Johnson, 2021, section 3).

The moving averages of BN are an exponential average over recent training
batches, computed while the weights were still changing. Precise BN recomputes
them with the weights frozen, as true averages over N batches: after the call,
`moving_mean` is the mean of the N per-batch means of the layer's input and
`moving_variance` the mean of the N per-batch variances.
"""

import tensorflow as tf

from bnkeras.layers.base import BatchNormBase
from bnkeras.model_layers import bn_layers


def recalibrate_batchnorm(model, dataset, num_batches):
    """Recomputes the moving statistics of every BN layer of `model` as true averages.

    Args:
        model: A Keras model with `keras.layers.BatchNormalization` and/or bnkeras
            BN-family layers (nested models too).
        dataset: An iterable of batches: `inputs` or `(inputs, targets, ...)`
            tuples (a `tf.data.Dataset` as given to `fit`). Targets are ignored.
        num_batches: How many batches to average over (e.g. 100-200).

    Returns:
        The number of batches used (fewer when the dataset ends first).

    Every other weight and state (trainable weights, renorm's `renorm_*`
    statistics and step, other layers' state) is left exactly as it was. BN layers
    with `trainable=False` are left alone (frozen, as in Keras). Runs eagerly,
    one forward pass per batch in training mode.
    """
    if num_batches < 1:
        raise ValueError(
            f"Argument `num_batches` must be >= 1. Received: num_batches={num_batches}"
        )
    layers = [layer for layer in bn_layers(model) if layer.trainable]
    if not layers:
        return 0
    recalibrated = {id(layer.moving_mean) for layer in layers} | {
        id(layer.moving_variance) for layer in layers
    }
    others = [v for v in model.variables if id(v) not in recalibrated]
    saved = [tf.identity(v.value) for v in others]
    momenta = [layer.momentum for layer in layers]
    # Renorm derives its moving variance from a moving stddev; use plain BN's
    # update so that the result is the mean of the batch variances.
    plain_update = BatchNormBase._update_moving_statistics
    renorm = [
        layer
        for layer in layers
        if isinstance(layer, BatchNormBase)
        and type(layer)._update_moving_statistics is not plain_update
    ]
    for layer in renorm:
        layer._update_moving_statistics = plain_update.__get__(layer)
    used = 0
    try:
        for batch in dataset:
            if used == num_batches:
                break
            inputs = batch[0] if isinstance(batch, tuple) else batch
            used += 1
            # Momentum 1 - 1/k turns the exponential average into the running mean
            # of the k batches seen so far (the first batch replaces the old value).
            for layer in layers:
                layer.momentum = 1.0 - 1.0 / used
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        for layer in renorm:
            del layer._update_moving_statistics
        for variable, value in zip(others, saved, strict=True):
            variable.assign(value)
    return used
