"""LiteRT (TensorFlow Lite): write `model.tflite` through Keras and check it in the LiteRT interpreter."""

import numpy as np

from bnkeras.export.verify import FormatCheck, as_list, compare, output_names


def write_litert(model, path):
    """Writes `model` as a LiteRT flatbuffer with Keras's own exporter (dynamic batch)."""
    model.export(str(path), format="litert", verbose=False)


def _interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - a declared dependency
        import tensorflow as tf

        # tf.lite.Interpreter is deprecated in favour of ai-edge-litert; same API.
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def run_litert(model, path, inputs):
    """Outputs of the LiteRT model at `path` on `inputs`, in the order of `model.outputs`.

    Runs the `serving_default` signature, which names inputs like the Keras model's
    inputs and outputs `output_0`, `output_1`, ... in the model's output order.
    """
    runner = _interpreter(path).get_signature_runner("serving_default")
    arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    names = list(runner.get_input_details())
    keras_names = [tensor.name for tensor in model.inputs]
    if sorted(names) == sorted(keras_names):
        feeds = dict(zip(keras_names, arrays, strict=True))
    else:  # generated names: in the order of the model's inputs
        feeds = dict(zip(names, arrays, strict=True))
    outputs = runner(**{name: np.asarray(x) for name, x in feeds.items()})
    return as_list([outputs[f"output_{i}"] for i in range(len(outputs))])


def check_litert(model, inputs, path, rtol, atol):
    """A `FormatCheck` of the LiteRT model at `path` against `model(inputs)`."""
    try:
        reference = as_list(model(inputs, training=False))
        outputs = compare(
            reference, run_litert(model, path, inputs), output_names(model), rtol, atol
        )
        return FormatCheck("litert", outputs)
    except Exception as error:  # a model that cannot run fails verification
        return FormatCheck("litert", [], error=f"{type(error).__name__}: {error}")
