import pytest

from bnkeras.training.config import ConfigError, build_config, preset_names


def test_presets_load():
    assert {"demo", "cifar_resnet20", "imagenette_resnet18", "imagenet_resnet50"} <= set(
        preset_names()
    )
    for name in preset_names():
        build_config(name)
    imagenet = build_config("imagenet_resnet50")
    train = imagenet["train"]
    assert (train["epochs"], train["optimizer"], train["momentum"], train["warmup_epochs"]) == (
        90,
        "sgd",
        0.9,
        5,
    )
    assert (train["lr"], train["lr_scaling"], train["weight_decay"], train["label_smoothing"]) == (
        0.1,
        "linear",
        1e-4,
        0.1,
    )


def test_overrides_are_typed():
    config = build_config(
        "demo",
        ["train.lr=0.05", "train.nesterov=false", "data.mean=[0.5, 0.5, 0.5]"],
        {"train.epochs": 3},
    )
    assert config["train"]["lr"] == 0.05 and config["train"]["nesterov"] is False
    assert config["data"]["mean"] == [0.5, 0.5, 0.5] and config["train"]["epochs"] == 3
    assert build_config("demo", ["train.lr=1"])["train"]["lr"] == 1.0  # int -> float


def test_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("train: {epochs: 2}\nnorm: {name: ghost, virtual_batch_size: 16}\n")
    config = build_config(str(path))
    assert config["train"]["epochs"] == 2 and config["norm"]["name"] == "ghost"


@pytest.mark.parametrize(
    "preset,sets,flat,message",
    [
        ("nope", [], {}, r"Unknown preset 'nope': valid presets are .*demo"),
        (
            "demo",
            ["train.lrr=0.1"],
            {},
            r"Unknown config key train.lrr .*valid keys are .*train.lr",
        ),
        ("demo", ["training.lr=0.1"], {}, r"Unknown config section 'training'"),
        ("demo", ["train.lr"], {}, r"--set expects key=value"),
        (
            "demo",
            ["train.epochs=two"],
            {},
            r"train.epochs expects an integer. Received: train.epochs='two'",
        ),
        (
            "demo",
            [],
            {"model.name": "vgg16"},
            r"Unknown model 'vgg16': valid models are .*resnet50",
        ),
        (
            "demo",
            [],
            {"norm.name": "layernorm"},
            r"Unknown norm 'layernorm': valid norms are bn, renorm, ghost, keras, none",
        ),
        ("demo", [], {"train.strategy": "tpu"}, r"Unknown train.strategy 'tpu'"),
        ("demo", [], {"train.lr": -1.0}, r"train.lr must be > 0. Received: -1.0"),
    ],
)
def test_bad_configs(preset, sets, flat, message):
    with pytest.raises(ConfigError, match=message):
        build_config(preset, sets, flat)
