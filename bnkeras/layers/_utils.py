"""Argument validation and cross-replica helpers shared by the layers."""

import numbers

import keras
import tensorflow as tf


def check_tensorflow_backend(layer_name):
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{layer_name} needs the TensorFlow backend of Keras; the active backend "
            f"is {backend!r}. Set KERAS_BACKEND=tensorflow before importing keras."
        )


def as_int(name, value, minimum=None):
    """`value` as an int, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise ValueError(f"Argument `{name}` must be an integer. Received: {name}={value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value}"
        )
    return value


def as_float(name, value, low=None, high=None, low_inclusive=True, high_inclusive=False):
    """`value` as a float in the given range, or a ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"Argument `{name}` must be a number. Received: {name}={value!r}")
    value = float(value)
    too_low = low is not None and (value < low if low_inclusive else value <= low)
    too_high = high is not None and (value > high if high_inclusive else value >= high)
    if too_low or too_high or value != value:  # the last test catches NaN
        left = "[" if low_inclusive else "("
        right = "]" if high_inclusive else ")"
        interval = (
            f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        )
        raise ValueError(f"Argument `{name}` must be in {interval}. Received: {name}={value}")
    return value


def as_bool(name, value):
    if not isinstance(value, (bool, int)) or value not in (0, 1):
        raise ValueError(f"Argument `{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def mask_weights(mask, x):
    """0/1 weights of `x`'s shape and dtype from a mask over every axis but the last
    (as Keras), or None without a mask."""
    if mask is None:
        return None
    return tf.broadcast_to(tf.cast(mask, x.dtype)[..., None], tf.shape(x))


def replica_context_to_sync(synchronized):
    """The replica context to all-reduce statistics in, or None for local statistics."""
    if not synchronized:
        return None
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def all_reduce_sum(ctx, *tensors):
    """Sums tensors over replicas (None ctx: unchanged).

    The tensors are packed into one vector for a single collective: separate
    collectives without a data dependency may be launched in a different order on
    each replica and then pair up wrongly.
    """
    if ctx is None:
        return tensors
    flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)
    reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, flat)
    sizes = [tf.size(t) for t in tensors]
    return tuple(
        tf.reshape(part, tf.shape(t))
        for part, t in zip(tf.split(reduced, sizes), tensors, strict=True)
    )
