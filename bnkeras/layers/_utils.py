"""Argument validation, masks and cross-replica helpers shared by the layers.

Everything here runs on every Keras backend except the cross-replica helpers,
which serve `tf.distribute` and import TensorFlow only when they are used on the
TensorFlow backend.
"""

import numbers

import keras
from keras import ops


def on_tensorflow():
    """True when Keras runs on TensorFlow (the backend is fixed for the process).

    Not cached with functools: TorchDynamo (`torch.compile`, Keras's `jit_compile=True`
    on torch) warns about every cached function it traces; `backend()` is a lookup."""
    return keras.backend.backend() == "tensorflow"


def step_dtype():
    """The dtype of step counters: int64, or int32 on JAX without 64-bit types
    (`jax_enable_x64` off, JAX's default, where an int64 array is truncated to int32
    with a warning). Saved files load across backends either way."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            return "int32"
    return "int64"


def is_floating(dtype):
    return "float" in keras.backend.standardize_dtype(dtype)


def is_half(dtype):
    return keras.backend.standardize_dtype(dtype) in ("float16", "bfloat16")


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
    return ops.expand_dims(ops.cast(mask, x.dtype), -1) * ops.ones_like(x)


# Keras's type promotion (`keras.backend.result_type`) turns float64 into float32 on
# every backend but TensorFlow, as JAX does without 64-bit types. Most keras.ops keep
# their input's dtype, but those that promote through it compute a float64 input in
# float32 on torch, which has float64: `mean` and `divide_no_nan` below call torch
# there, and `segment_sum` for the same reason and one more.


def mean(x, axes, keepdims=False):
    """The mean over `axes`, in `x`'s dtype: `keras.ops.mean`, except on torch, where
    Keras 3.15's casts float64 to float32 first; `torch.mean` serves there."""
    if keras.backend.backend() != "torch":
        return ops.mean(x, axes, keepdims=keepdims)
    import torch

    return torch.mean(ops.convert_to_tensor(x), tuple(axes), keepdims)


def divide_no_nan(x1, x2):
    """`x1 / x2`, 0 where `x2` is 0, in the tensors' (common) dtype:
    `keras.ops.divide_no_nan`, except on torch, where Keras 3.15's returns float32
    for float64 tensors."""
    if keras.backend.backend() != "torch":
        return ops.divide_no_nan(x1, x2)
    import torch

    zero = x2 == 0
    return torch.where(zero, torch.zeros_like(x1), x1 / torch.where(zero, 1, x2))


def segment_sum(data, segment_ids, num_segments):
    """Sums of the rows of `data` by `segment_ids` (`num_segments` segments, possibly 0),
    in `data`'s dtype: `keras.ops.segment_sum`, except on torch, where Keras 3.15's
    sums in float32 (float64 data loses its precision) and takes `num_segments=0` for
    "not given" (it then takes the largest id, and an empty batch fails); torch's
    `index_add` serves there."""
    if keras.backend.backend() != "torch":
        return ops.segment_sum(data, segment_ids, num_segments)
    import torch

    data = ops.convert_to_tensor(data)
    sums = torch.zeros((num_segments, *data.shape[1:]), dtype=data.dtype, device=data.device)
    return sums.index_add(0, ops.convert_to_tensor(segment_ids), data)


def replica_context_to_sync(synchronized):
    """The `tf.distribute` replica context to all-reduce statistics in, or None for
    local statistics (always None on backends other than TensorFlow)."""
    if not synchronized or not on_tensorflow():
        return None
    import tensorflow as tf

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
    import tensorflow as tf

    flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], 0)
    reduced = ctx.all_reduce(tf.distribute.ReduceOp.SUM, flat)
    sizes = [tf.size(t) for t in tensors]
    return tuple(
        tf.reshape(part, tf.shape(t))
        for part, t in zip(tf.split(reduced, sizes), tensors, strict=True)
    )
