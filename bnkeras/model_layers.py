"""Finding the layers of a model: nested models and sublayers, each layer once."""

import keras

from bnkeras._compat import tracked_sublayers
from bnkeras.layers.base import BatchNormBase

# Every BN-family layer: Keras's and bnkeras's three (all share BN's inference form).
BN_TYPES = (keras.layers.BatchNormalization, BatchNormBase)


def iter_layers(model):
    """Every layer inside `model` in depth-first order: nested models and the tracked
    sublayers of custom layers included, shared layers once."""
    seen = set()
    stack = list(reversed(_children(model)))
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        yield layer
        stack.extend(reversed(_children(layer)))


def _children(layer):
    return list(layer.layers) if isinstance(layer, keras.Model) else tracked_sublayers(layer)


def bn_layers(model):
    return [layer for layer in iter_layers(model) if isinstance(layer, BN_TYPES)]
