"""OpenVINO IR: write `model.xml` + `model.bin` (converted from the model's inference
function) and check them in OpenVINO Runtime.

Optional: needs the `openvino` package (`pip install "bnkeras[openvino]"`).
"""

import numpy as np

from bnkeras.export.verification import as_list

INSTALL_HINT = 'the OpenVINO format needs the openvino package: pip install "bnkeras[openvino]"'


def _openvino():
    try:
        import openvino
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return openvino


def available():
    """True when the openvino package can be imported."""
    try:
        _openvino()
    except ImportError:
        return False
    return True


def write_openvino(model, path):
    """Writes `model` as OpenVINO IR (`path` ends in .xml; the weights go to the .bin
    beside it), float32, keeping run-time dimensions such as the batch.

    Not `model.export(format="openvino")`: with Keras 3.15 and OpenVINO 2026.4 its
    IR of a model with swish activations (EfficientNet) has an extra output per
    activation (the tensors TensorFlow keeps for their custom gradient). This
    converts the same inference function and keeps only the model's outputs.
    """
    import tensorflow as tf

    from bnkeras.export.writers import inference_function

    ov = _openvino()
    signature = [
        tf.TensorSpec((None, *t.shape[1:]), t.dtype, name=t.name.split(":")[0])
        for t in model.inputs
    ]
    concrete = inference_function(model, signature)
    converted = ov.convert_model(concrete)
    results = {}
    for result in converted.get_results():
        for name in result.input(0).get_tensor().get_names():
            results.setdefault(name, result)
    outputs = [results[tensor.name] for tensor in concrete.outputs]
    for index, result in enumerate(outputs):
        result.output(0).get_tensor().set_names({f"output_{index}"})
    ov.save_model(
        ov.Model(outputs, converted.get_parameters(), model.name), str(path), compress_to_fp16=False
    )


def openvino_runner(path, precision="f32"):
    """A function running the OpenVINO IR at `path` on the CPU (inputs -> output list),
    inputs and outputs in the order of the Keras model's.

    `precision` is the CPU plugin's inference precision: f32 checks the exported
    graph itself; OpenVINO's own default is bf16 on CPUs with AVX512-BF16 or AMX.
    """
    core = _openvino().Core()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})

    def run(inputs):
        arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        results = compiled([np.asarray(x) for x in arrays])
        return as_list([results[output] for output in compiled.outputs])

    return run
