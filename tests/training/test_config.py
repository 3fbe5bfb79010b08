import dataclasses
import os

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


def test_a_preset_name_is_the_preset_beside_a_file_or_folder_of_that_name(tmp_path, monkeypatch):
    """`--config demo` in a folder holding `demo/` (or a file `demo`): before, "Config
    file demo is a directory". A value with a folder in it is the path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    (tmp_path / "cifar_resnet20").write_text("train: {epochs: 2}\n")
    (tmp_path / "mine").write_text("train: {epochs: 3}\n")
    preset = build_config("demo")
    assert preset["model"]["name"] == "resnet8"
    assert build_config("cifar_resnet20")["train"]["epochs"] != 2
    assert build_config("./cifar_resnet20")["train"]["epochs"] == 2
    assert build_config("mine")["train"]["epochs"] == 3  # not a preset: the file
    with pytest.raises(ConfigError, match=r"Config file demo is a directory"):
        build_config(f"demo{os.sep}")


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
            r"train.epochs must be an integer in \[1, 500000\]. Received: train.epochs='two'",
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
        (
            "demo",
            [],
            {"train.lr": -1.0},
            r"train.lr must be a finite number > 0. Received: train.lr=-1.0",
        ),
    ],
)
def test_bad_configs(preset, sets, flat, message):
    with pytest.raises(ConfigError, match=message):
        build_config(preset, sets, flat)


def test_every_key_has_a_check_and_its_default_passes():
    from bnkeras.training.config import DEFAULTS, SECTIONS, RunConfig

    for section, cls in SECTIONS.items():
        for field in dataclasses.fields(cls):
            assert callable(field.metadata.get("check")), f"{section}.{field.name}"
    assert RunConfig().to_dict() == DEFAULTS


def test_mixed_precision_and_jit_compile_values():
    def train(*sets):
        return build_config("demo", list(sets))["train"]

    assert train()["mixed_precision"] is False and train()["jit_compile"] == "auto"
    assert train("train.mixed_precision=true")["mixed_precision"] == "float16"  # back-compat
    assert train("train.mixed_precision=bfloat16")["mixed_precision"] == "bfloat16"
    assert build_config("demo", [], {"train.mixed_precision": True})["train"][
        "mixed_precision"
    ] == ("float16")
    assert train("train.jit_compile=true")["jit_compile"] is True
    assert train("train.jit_compile=false")["jit_compile"] is False
    with pytest.raises(ConfigError, match=r"Received: train.jit_compile=1$"):
        train("train.jit_compile=1")
    with pytest.raises(ConfigError, match=r"valid values are false, float16, bfloat16"):
        train("train.mixed_precision=fp8")


def test_numbers_are_coerced_and_renorm_clips_take_warmup_or_numbers():
    config = build_config("demo", ["train.lr=1e-3", "norm.rmax=3", "norm.dmax=.inf"])
    assert config["train"]["lr"] == 0.001 and config["norm"]["rmax"] == 3.0
    assert config["norm"]["dmax"] == float("inf") and config["norm"]["rmax"] != "warmup"
    with pytest.raises(ConfigError, match=r"'warmup' or a number >= 1. Received: norm.rmax=0.5"):
        build_config("demo", ["norm.rmax=0.5"])


def test_run_config_checks_on_construction():
    from bnkeras.training.config import DataConfig, RunConfig

    with pytest.raises(ConfigError, match=r"Received: data.image_size=0$"):
        DataConfig(image_size=0)
    with pytest.raises(ConfigError, match=r"Unknown config key data.size"):
        RunConfig.from_dict({"data": {"size": 3}})
    assert RunConfig.from_dict({"train": {"lr": "0.5"}}).train.lr == 0.5
