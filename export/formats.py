"""The export formats and ONNX opsets, importable without TensorFlow (for the parser)."""

FORMATS = ("keras", "saved_model", "onnx", "litert", "openvino")
DEFAULT_FORMATS = ("keras", "saved_model", "onnx")
FILENAMES = {
    "keras": "model_folded.keras",
    "saved_model": "saved_model",
    "onnx": "model.onnx",
    "litert": "model.tflite",
    "openvino": "model.xml",
}
# Files a format writes beside its main one (ONNX: the weights of a model over 2 GB).
COMPANIONS = {"openvino": ("model.bin",), "onnx": ("model.onnx.data",)}
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 18, 17
