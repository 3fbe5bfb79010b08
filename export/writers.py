"""Writers for the export formats: .keras, SavedModel and ONNX."""

import tensorflow as tf


def _input_signature(model):
    return [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=f"input_{i}")
        for i, t in enumerate(model.inputs)
    ]


def write_keras(model, path):
    model.save(path)


def write_saved_model(model, path):
    model.export(str(path), format="tf_saved_model", verbose=False)


def write_onnx(model, path, opset):
    try:
        import tf2onnx
    except ImportError as error:  # pragma: no cover - a declared dependency
        raise ImportError("ONNX export needs tf2onnx: pip install tf2onnx") from error

    @tf.function
    def serve(*inputs):
        return model(list(inputs) if len(inputs) > 1 else inputs[0], training=False)

    tf2onnx.convert.from_function(
        serve, input_signature=_input_signature(model), opset=opset, output_path=str(path)
    )
