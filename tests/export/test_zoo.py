"""The smallest member of each keras.applications family, untrained with random BN
statistics, through fold, per-layer and end-to-end verification and every format.

Run with `-s` to see one line per model (BN count, folded, error per format, time).
"""

import gc
import time

import keras
import numpy as np
import pytest

from bnkeras.export import fold_batchnorm, verify
from bnkeras.export.verify import random_inputs
from bnkeras.export.writers import write_keras, write_onnx, write_saved_model
from tests.export.test_fold import randomize

# (application, input size, extra arguments): each family's smallest member at
# (close to) its smallest input size.
ZOO = [
    ("ResNet50", 32, {}),
    ("ResNet50V2", 32, {}),
    ("InceptionV3", 75, {}),
    ("Xception", 71, {}),
    ("MobileNet", 32, {"alpha": 0.25}),
    ("MobileNetV2", 32, {"alpha": 0.35}),
    ("MobileNetV3Small", 32, {"alpha": 0.75, "minimalistic": True}),
    ("DenseNet121", 32, {}),
    ("NASNetMobile", 32, {}),
    ("EfficientNetB0", 32, {}),
    ("EfficientNetV2B0", 32, {}),
    ("ConvNeXtTiny", 32, {}),
    ("VGG16", 32, {}),
]
_LINEAR = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def _bn_after_linear(model):
    """BN layers reading a conv/dense without activation: each must fold backward
    (counted here without the fold's own analysis)."""
    names = set()
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        producer = layer.input._keras_history.operation
        activation = getattr(producer, "activation", None)
        if isinstance(producer, _LINEAR) and activation in (None, keras.activations.linear):
            names.add(layer.name)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("name,size,kwargs", ZOO, ids=[z[0] for z in ZOO])
def test_application_folds_and_exports(name, size, kwargs, tmp_path):
    started = time.perf_counter()
    keras.backend.clear_session()
    gc.collect()
    model = getattr(keras.applications, name)(
        input_shape=(size, size, 3), weights=None, classes=10, **kwargs
    )
    randomize(model, np.random.default_rng(0))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]

    result = fold_batchnorm(model)
    report = result.report
    folded_names = {e.bn for e in report.folded}
    assert _bn_after_linear(model) <= folded_names
    assert len(report.entries) == len(bns) and report.bn_after == 0
    assert len(report.folded) + len(report.refused) == len(bns)

    paths = {"keras": tmp_path / "m.keras", "saved_model": tmp_path / "sm"}
    paths["onnx"] = tmp_path / "m.onnx"
    write_keras(result.model, paths["keras"])
    write_saved_model(result.model, paths["saved_model"])
    write_onnx(result.model, paths["onnx"], 17)
    reloaded = keras.saving.load_model(paths["keras"], compile=False)
    checked = verify(
        model,
        random_inputs(model, 4),
        folded=reloaded,
        saved_model=paths["saved_model"],
        onnx=paths["onnx"],
        fold_report=report,
    )
    assert checked.passed, checked
    assert len(checked.layers) == len(report.folded)
    worst = {
        c.format: max(o.max_abs / max(o.peak, 1e-30) for o in c.outputs) for c in checked.checks
    }
    layer_worst = max((c.max_abs / max(c.atol / 1e-5, 1e-30) for c in checked.layers), default=0)
    print(
        f"\nZOO {name:17s} {size:3d}px BN {len(bns):3d} folded {len(report.folded):3d} "
        f"affine {len(report.refused):2d} | per-layer {layer_worst:.1e} | "
        + " ".join(f"{fmt} {err:.1e}" for fmt, err in worst.items())
        + f" | {time.perf_counter() - started:.1f} s"
    )
