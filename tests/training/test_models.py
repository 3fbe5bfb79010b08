import keras
import pytest

import bnkeras
from bnkeras.export import count_bn
from bnkeras.model_layers import bn_layers
from bnkeras.training.config import DEFAULTS
from bnkeras.training.models import MODELS, build_model

NORM_TYPES = {
    "bn": bnkeras.BatchNormalization,
    "renorm": bnkeras.BatchRenormalization,
    "ghost": bnkeras.GhostBatchNormalization,
    "keras": keras.layers.BatchNormalization,
}


def _build(name, norm, zero_init=False, size=32):
    model_config = {
        **DEFAULTS["model"],
        "name": name,
        "width": 4,
        "alpha": 0.35,
        "zero_init_residual": zero_init,
    }
    return build_model(model_config, {**DEFAULTS["norm"], "name": norm}, 7, (size, size, 3))


@pytest.mark.parametrize("name", ["resnet8", "resnet18", "resnet50", "mobilenet_v2"])
@pytest.mark.parametrize("norm", ["bn", "renorm", "ghost", "keras", "none"])
def test_every_model_takes_every_norm(name, norm):
    model = _build(name, norm)
    assert model.output.shape == (None, 7)
    norms = bn_layers(model)
    if norm == "none":
        assert not norms
        assert all(
            layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
        )
    else:
        assert norms and all(type(layer) is NORM_TYPES[norm] for layer in norms)
        assert not any(
            layer.use_bias for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
        )


def test_zero_init_residual():
    model = _build("resnet18", "bn", zero_init=True)
    last = [layer for layer in model.layers if layer.name.endswith("_bn2")]
    assert last and all(float(keras.ops.max(keras.ops.abs(layer.gamma))) == 0.0 for layer in last)
    assert float(keras.ops.min(model.get_layer("stem_bn").gamma)) == 1.0


def test_resnet50_matches_the_reference_size():
    model = build_model(
        {**DEFAULTS["model"], "name": "resnet50"},
        {**DEFAULTS["norm"], "name": "bn"},
        1000,
        (224, 224, 3),
    )
    trainable = sum(int(keras.ops.size(w)) for w in model.trainable_weights)
    assert trainable == 25_557_032  # torchvision's ResNet-50 (v1.5)


def test_mobilenet_v2_matches_keras_applications():
    ours = build_model(
        {**DEFAULTS["model"], "name": "mobilenet_v2"},
        {**DEFAULTS["norm"], "name": "bn"},
        1000,
        (224, 224, 3),
    )
    assert ours.count_params() == keras.applications.MobileNetV2(weights=None).count_params()
    assert count_bn(ours) == 52


def test_model_names_are_listed():
    assert {"resnet20", "resnet56", "resnet18", "resnet34", "resnet50", "mobilenet_v2"} <= set(
        MODELS
    )
