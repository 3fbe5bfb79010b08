"""Every keras.applications family but VGG (no BN, plain convolutions), untrained with
random BN statistics, through fold, per-layer and end-to-end verification, `.keras`
and ONNX (where no other family converts the same ops), and the other formats for
the families whose ops their converters treat specially.

Each family is built by its own keras.applications builder (keras.src, pinned by
the `keras<3.16` requirement) at a reduced depth where the builder takes one:
every block and cell type of the family is there (e.g. ResNet's convolution and
identity blocks, NASNet's normal and reduction cells), at a fraction of the
conversion time. Families without a depth argument (Inception, Xception,
MobileNet V1/V3) use their smallest public member. MobileNetV2 (alpha 0.35)
goes through `bnkeras export` itself, with the same checks, in
tests/export/test_export_cli.py. The full-size members of all 40 applications are
exported by `benchmarks/export_zoo.py`.

Run with `-s` to see one line per model (BN count, folded, error per format, time).
"""

import gc
import time

import keras
import numpy as np
import pytest
from keras.src.applications import convnext, densenet, efficientnet, efficientnet_v2, nasnet
from keras.src.applications import resnet as resnet_v1

from bnkeras.export import fold_batchnorm, verify
from bnkeras.export.litert import write_litert
from bnkeras.export.openvino import write_openvino
from bnkeras.export.verification import random_inputs
from bnkeras.export.writers import write_keras, write_onnx, write_saved_model
from tests.export.test_fold import randomize


def _resnet(preact):
    """ResNet50 (v1) / ResNet50V2 with 2 blocks a stage (a projection and an identity block)."""
    stack = resnet_v1.stack_residual_blocks_v2 if preact else resnet_v1.stack_residual_blocks_v1
    strides = (2, 2, 2, 1) if preact else (1, 2, 2, 2)  # as ResNet50V2 / ResNet50

    def stack_fn(x):
        for stage, (filters, stride) in enumerate(zip((64, 128, 256, 512), strides, strict=True)):
            x = stack(x, filters, 2, stride1=stride, name=f"conv{stage + 2}")
        return x

    return lambda **kw: resnet_v1.ResNet(stack_fn, preact, True, name="resnet", **kw)


def _application(name, **extra):
    return lambda **kw: getattr(keras.applications, name)(**extra, **kw)


# (family, builder, input size): each family's own builder.
ZOO = [
    ("ResNet", _resnet(preact=False), 32),
    ("ResNetV2", _resnet(preact=True), 32),
    ("InceptionV3", _application("InceptionV3"), 75),
    ("Xception", _application("Xception"), 71),
    ("MobileNet", _application("MobileNet", alpha=0.25), 32),
    ("MobileNetV3Small", _application("MobileNetV3Small", alpha=0.75, minimalistic=True), 32),
    ("DenseNet", lambda **kw: densenet.DenseNet([2, 2, 2, 2], **kw), 32),
    (
        "NASNet",
        lambda **kw: nasnet.NASNet(
            penultimate_filters=192, num_blocks=1, stem_block_filters=32, skip_reduction=False, **kw
        ),
        32,
    ),
    (
        "EfficientNet",
        lambda **kw: efficientnet.EfficientNet(0.5, 0.1, 32, name="efficientnet", **kw),
        32,
    ),
    (
        "EfficientNetV2",
        lambda **kw: efficientnet_v2.EfficientNetV2(0.5, 0.1, 32, name="efficientnetv2-b0", **kw),
        32,
    ),
    (
        "ConvNeXt",
        lambda **kw: convnext.ConvNeXt([1, 1, 2, 1], [32, 64, 96, 128], name="convnext", **kw),
        32,
    ),
    # VGG (plain conv/ReLU/max-pool, no BN) adds nothing ResNet and ConvNeXt (no BN) lack.
]
# Every family goes through the fold and the `.keras` file, and ONNX (tf2onnx converts
# each family's ops its own way) except where another family's conversion covers the
# same TensorFlow ops (below: ~5 s each of the suite's time). Families also written as SavedModel, LiteRT and
# OpenVINO (each format adds ~2-15 s): the ones with the ops those converters handle
# specially (Normalization's captured constants, grouped convs, GELU and LayerNorm;
# swish and squeeze-excite); the others trace the same TensorFlow ops as these.
# benchmarks/export_zoo.py writes every format for all 40 applications.
EDGE_FORMATS = {"ConvNeXt", "EfficientNet"}
# Family: the family whose ONNX conversion has its ops (concat and average pooling;
# separable convolutions).
ONNX_COVERED_BY = {"InceptionV3": "DenseNet", "Xception": "NASNet"}
_LINEAR = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def test_each_family_without_onnx_names_a_family_converted_to_onnx():
    families = {z[0] for z in ZOO}
    for name, cover in ONNX_COVERED_BY.items():
        assert name in families and cover in families and cover not in ONNX_COVERED_BY


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
@pytest.mark.parametrize("name,build,size", ZOO, ids=[z[0] for z in ZOO])
def test_application_folds_and_exports(name, build, size, tmp_path):
    started = time.perf_counter()
    keras.backend.clear_session()
    gc.collect()
    model = build(input_shape=(size, size, 3), weights=None, classes=10)
    randomize(model, np.random.default_rng(0))
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]

    result = fold_batchnorm(model)
    report = result.report
    folded_names = {e.bn for e in report.folded}
    assert _bn_after_linear(model) <= folded_names
    assert len(report.entries) == len(bns) and report.bn_after == 0
    assert len(report.folded) + len(report.refused) == len(bns)

    paths = {"keras": tmp_path / "m.keras"}
    write_keras(result.model, paths["keras"])
    if name not in ONNX_COVERED_BY:
        paths["onnx"] = tmp_path / "m.onnx"
        write_onnx(result.model, paths["onnx"], 17)
    if name in EDGE_FORMATS:
        paths["saved_model"] = tmp_path / "sm"
        paths["litert"], paths["openvino"] = tmp_path / "m.tflite", tmp_path / "m.xml"
        write_saved_model(result.model, paths["saved_model"])
        write_litert(result.model, paths["litert"], paths["saved_model"])  # as `bnkeras export`
        write_openvino(result.model, paths["openvino"])
    reloaded = keras.saving.load_model(paths["keras"], compile=False)
    checked = verify(
        model,
        random_inputs(model, 4),
        folded=reloaded,
        saved_model=paths.get("saved_model"),
        onnx=paths.get("onnx"),
        litert=paths.get("litert"),
        openvino=paths.get("openvino"),
        fold_report=report,
    )
    assert checked.passed, checked
    assert {c.format for c in checked.checks} == set(paths)  # every written format checked
    assert len(checked.layers) == len(report.folded)
    worst = {
        c.format: max(o.max_abs / max(o.peak, 1e-30) for o in c.outputs) for c in checked.checks
    }
    layer_worst = max((c.max_abs / max(c.peak, 1e-30) for c in checked.layers), default=0)
    print(
        f"\nZOO {name:17s} {size:3d}px BN {len(bns):3d} folded {len(report.folded):3d} "
        f"affine {len(report.refused):2d} | per-layer {layer_worst:.1e} | "
        + " ".join(f"{fmt} {err:.1e}" for fmt, err in worst.items())
        + f" | {time.perf_counter() - started:.1f} s"
    )
