"""Which Keras backend runs, and a clear error for the features that need TensorFlow.

The layers, `recalibrate_batchnorm`, `convert_batchnorm` and `.keras` files work on
every Keras backend; training (`bnkeras train`, tf.data and tf.distribute) and the
export formats written through TensorFlow (SavedModel, ONNX, LiteRT, OpenVINO) need
the TensorFlow backend.
"""

import os

import numpy as np

from bnkeras.errors import Error


class BackendError(Error, RuntimeError):
    """A feature that needs another Keras backend than the one this process runs."""


def keras_backend():
    """The Keras backend of this process."""
    import keras

    return keras.backend.backend()


def require_tensorflow(feature):
    """Raises `BackendError` (a `bnkeras.Error`, and a RuntimeError) naming the backend
    and the `cpu` extra unless Keras runs on TensorFlow."""
    backend = keras_backend()
    if backend == "tensorflow":
        return
    raise BackendError(
        f"{feature} needs Keras's TensorFlow backend; this process runs Keras on "
        f"{backend!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND', '')!r}). Install "
        "TensorFlow with `pip install 'bnkeras[cpu]'` (or `bnkeras[gpu]`) and set "
        f"KERAS_BACKEND=tensorflow. On {backend}, bnkeras offers its layers, "
        "recalibrate_batchnorm, convert_batchnorm and .keras files."
    )


def to_numpy(x):
    """`x` (a tensor of this process's backend, a Keras variable, a NumPy array or a
    number) as a NumPy array. Use it for model outputs: on torch an output computed
    from trainable weights requires grad, and `np.asarray` cannot read it
    (`keras.ops.convert_to_numpy` detaches it first)."""
    if isinstance(x, np.ndarray):
        return x
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))
