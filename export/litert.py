"""LiteRT (TensorFlow Lite): write `model.tflite` (float or int8) from a SavedModel of the
model and check it in the LiteRT interpreter."""

import contextlib
import tempfile
from pathlib import Path

import numpy as np

from bnkeras.export.verification import as_list


@contextlib.contextmanager
def _saved_model_of(model, path, saved_model):
    """`saved_model` when given, else a SavedModel of `model` in a temporary folder
    beside `path` (on the output's disk), removed afterwards."""
    if saved_model is not None:
        yield Path(saved_model)
        return
    from bnkeras.export.writers import write_saved_model

    with tempfile.TemporaryDirectory(prefix=".litert-", dir=Path(path).parent) as folder:
        write_saved_model(model, Path(folder) / "saved_model")
        yield Path(folder) / "saved_model"


def _convert(model, path, saved_model, **settings):
    """Writes the LiteRT flatbuffer of `model` converted from its SavedModel, with the
    converter settings of `model.export(format="litert")` plus `settings`."""
    import tensorflow as tf

    with _saved_model_of(model, path, saved_model) as folder:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(folder))
        # As Keras's exporter (keras/src/export/litert.py): TFLite's builtin ops, and
        # TensorFlow's where there is no builtin; variables as resources.
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS,
            tf.lite.OpsSet.SELECT_TF_OPS,
        ]
        converter.experimental_enable_resource_variables = True
        for name, value in settings.items():
            if not hasattr(converter, name):
                raise AttributeError(f"TFLiteConverter has no setting {name!r}")
            setattr(converter, name, value)
        flatbuffer = converter.convert()
    Path(path).write_bytes(flatbuffer)


def write_litert(model, path, saved_model=None):
    """Writes `model` as a float LiteRT flatbuffer (dynamic batch).

    The conversion of `model.export(format="litert")`, which writes a SavedModel
    and converts it; given `saved_model` (written by `write_saved_model` for the
    same model), it converts that one instead of writing another.
    """
    _convert(model, path, saved_model)


def _interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover - a declared dependency
        import tensorflow as tf

        # tf.lite.Interpreter is deprecated in favour of ai-edge-litert; same API.
        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def litert_runner(model, path):
    """A function running the LiteRT model at `path` like `model` (inputs -> output list).

    Runs the `serving_default` signature, which names inputs like the Keras model's
    inputs and outputs `output_0`, `output_1`, ... in the model's output order.
    """
    runner = _interpreter(path).get_signature_runner("serving_default")
    names = list(runner.get_input_details())
    keras_names = [tensor.name for tensor in model.inputs]
    if sorted(names) == sorted(keras_names):
        names = keras_names
    # otherwise generated names, in the order of the model's inputs

    def run(inputs):
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        feeds = {name: np.asarray(x) for name, x in zip(names, arrays, strict=True)}
        outputs = runner(**feeds)
        return as_list([outputs[f"output_{i}"] for i in range(len(outputs))])

    return run


def run_litert(model, path, inputs):
    """Outputs of the LiteRT model at `path` on `inputs`, in the order of `model.outputs`."""
    return litert_runner(model, path)(inputs)


def _samples(batches):
    """Single-example input lists from batches (arrays, or lists of arrays for several inputs)."""
    for batch in batches:
        arrays = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        for i in range(len(arrays[0])):
            yield [np.asarray(a[i : i + 1], np.float32) for a in arrays]


def write_litert_int8(model, path, calibration, saved_model=None):
    """Writes a full-integer (int8 weights and activations) LiteRT model.

    Post-training quantization calibrated on `calibration`, a list of input batches;
    inputs and outputs stay float32 so that the file is a drop-in for `model.tflite`.
    `saved_model` as for `write_litert`.
    """
    import tensorflow as tf

    _convert(
        model,
        path,
        saved_model,
        optimizations=[tf.lite.Optimize.DEFAULT],
        representative_dataset=lambda: _samples(calibration),
    )


def check_int8(model, float_path, int8_path, batches, max_drop):
    """Top-1 agreement and accuracy drop of the int8 model against the float LiteRT model.

    `batches` is a list of (inputs, labels or None). With labels, the check passes
    when the accuracy drops by at most `max_drop` points; without, when at most
    `max_drop` percent of the top-1 predictions change.
    """
    agree = correct_float = correct_int8 = total = 0
    labelled = all(labels is not None for _, labels in batches)
    run_float, run_int8 = litert_runner(model, float_path), litert_runner(model, int8_path)
    for inputs, labels in batches:
        top_float = run_float(inputs)[0].argmax(-1)
        top_int8 = run_int8(inputs)[0].argmax(-1)
        agree += int((top_float == top_int8).sum())
        total += len(top_float)
        if labelled:
            correct_float += int((top_float == np.asarray(labels)).sum())
            correct_int8 += int((top_int8 == np.asarray(labels)).sum())
    result = {"examples": total, "top1_agreement": agree / total, "max_drop_points": max_drop}
    if labelled:
        result["accuracy_float"] = correct_float / total
        result["accuracy_int8"] = correct_int8 / total
        result["accuracy_drop_points"] = 100 * (correct_float - correct_int8) / total
        result["passed"] = result["accuracy_drop_points"] <= max_drop
    else:
        result["passed"] = 100 * (1 - agree / total) <= max_drop
    return result


def compare_speed(model, float_path, int8_path, inputs, rounds=20):
    """Median latency (ms) of the float and int8 LiteRT models, interleaved, and the ratio."""
    from bnkeras._timing import interleaved_times, paired_ratio

    runs = {"float": litert_runner(model, float_path), "int8": litert_runner(model, int8_path)}
    candidates = {name: (lambda run=run: run(inputs)) for name, run in runs.items()}
    times = interleaved_times(candidates, rounds)
    speedup, (low, high) = paired_ratio(times["float"], times["int8"])
    return {
        "float_ms": float(np.median(times["float"])) * 1e3,
        "int8_ms": float(np.median(times["int8"])) * 1e3,
        "int8_speedup": speedup,
        "int8_speedup_interquartile": [low, high],
        "rounds": rounds,
    }
