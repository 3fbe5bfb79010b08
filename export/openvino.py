"""OpenVINO IR: write `model.xml` + `model.bin` through Keras and check them in OpenVINO Runtime.

Optional: needs the `openvino` package (`pip install "bnkeras[openvino]"`).
"""

import numpy as np

from bnkeras.export.verify import as_list

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
    beside it) with Keras's own exporter, keeping the run-time batch dimension."""
    _openvino()
    model.export(str(path), format="openvino", verbose=False)


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
