"""Run configuration: defaults, YAML presets, overrides and validation.

A config is a dict of sections (`model`, `norm`, `data`, `train`). A preset
(training/configs/NAME.yaml) or a user YAML file overrides the defaults, and
command-line overrides (`--set train.lr=0.05`, `--epochs 3`, ...) override that.
Every key must exist in DEFAULTS: a typo is an error that lists the valid keys.
"""

import contextlib
import copy
import importlib.resources
from pathlib import Path

import yaml

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

DEFAULTS = {
    "model": {
        "name": "resnet20",
        "width": 16,  # first-stage filters of CIFAR ResNets
        "alpha": 1.0,  # MobileNetV2 width multiplier
        "zero_init_residual": False,
    },
    "norm": {
        "name": "bn",
        "momentum": 0.9,
        "epsilon": 1e-5,
        "sync": False,
        "virtual_batch_size": 32,
        "rmax": "warmup",
        "dmax": "warmup",
        "renorm_momentum": 0.99,
    },
    "data": {
        "dataset": "bnkeras_shapes",
        "data_dir": None,
        "train_split": "train",
        "eval_split": None,  # None: validation, else test
        "image_size": 32,
        "min_scale": 0.35,  # random-resized-crop area range (min_scale, 1)
        "crop_fraction": 1.0,  # evaluation: resize to size / crop_fraction, centre crop
        "holdout_fraction": 0.1,  # image folders without train/ and val/
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "cache": True,
        "shuffle_buffer": 10000,
        "seed": 0,
    },
    "train": {
        "epochs": 10,
        "batch_size": 128,
        "optimizer": "sgd",
        "lr": 0.1,
        "lr_scaling": "none",  # "linear": lr is given per 256 images, scaled by batch/256
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,  # not applied to BN gamma/beta or biases
        "schedule": "cosine",
        "warmup_epochs": 1,
        "step_epochs": [30, 60, 80],  # "step" schedule: lr x 0.1 at each
        "label_smoothing": 0.0,
        "ema": 0.0,  # > 0: exponential moving average of the weights (e.g. 0.999)
        "mixed_precision": False,
        "precise_bn_batches": 0,
        "strategy": "default",
        "seed": 0,
    },
}

CHOICES = {
    "train.optimizer": ("sgd", "adamw"),
    "train.schedule": ("cosine", "step", "constant"),
    "train.lr_scaling": ("none", "linear"),
    "train.strategy": ("default", "mirrored", "multiworker"),
}

# Keys that may differ when a run is resumed in the same work directory.
RESUMABLE_CHANGES = (
    "train.epochs",
    "data.data_dir",
    "train.precise_bn_batches",
    "train.strategy",
    "norm.sync",
)


class ConfigError(ValueError):
    """An invalid config; the message names the key and the valid values."""


def preset_names():
    files = importlib.resources.files("bnkeras.training") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text, source):
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{source} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of sections (model, norm, data, train).")
    return data


def load_preset(name_or_path):
    """The overrides of a preset name or a YAML file path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"Config file {name_or_path} does not exist.")
        return _read_yaml(path.read_text(), str(path))
    names = preset_names()
    if name_or_path not in names:
        raise ConfigError(
            f"Unknown preset {name_or_path!r}: valid presets are {', '.join(names)} (or a YAML file path)."
        )
    text = (
        importlib.resources.files("bnkeras.training") / "configs" / f"{name_or_path}.yaml"
    ).read_text()
    return _read_yaml(text, f"preset {name_or_path}")


def valid_keys():
    return [f"{section}.{key}" for section, values in DEFAULTS.items() for key in values]


_TYPE_NAMES = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
}


def _coerce(key, value, default):
    if default is None or value is None:
        return value
    if (
        isinstance(value, str)
        and isinstance(default, (int, float))
        and not isinstance(default, bool)
    ):
        with contextlib.suppress(ValueError):  # YAML 1.1 reads "1e-3" as a string
            value = float(value) if isinstance(default, float) else int(value)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if is_number:
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str) or is_number:  # rmax/dmax take numbers too
            return value
    elif isinstance(default, list) and isinstance(value, list):
        return value
    raise ConfigError(
        f"Config key {key} expects {_TYPE_NAMES[type(default)]}. Received: {key}={value!r}"
    )


def apply(config, overrides, source):
    """`config` updated with a nested dict of overrides, every key checked."""
    for section, values in overrides.items():
        if section not in DEFAULTS:
            raise ConfigError(
                f"Unknown config section {section!r} in {source}: valid sections are {', '.join(DEFAULTS)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(f"Config section {section!r} in {source} must be a mapping.")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(
                    f"Unknown config key {section}.{key} in {source}: valid keys are {', '.join(valid_keys())}."
                )
            config[section][key] = _coerce(f"{section}.{key}", value, DEFAULTS[section][key])
    return config


def parse_assignment(text):
    """'train.lr=0.05' -> {'train': {'lr': 0.05}} (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. train.lr=0.05). Received: {text!r}")
    key, raw = text.split("=", 1)
    if key.count(".") != 1:
        raise ConfigError(
            f"--set keys are section.key (e.g. train.lr). Received: {key!r}; valid keys are {', '.join(valid_keys())}."
        )
    section, name = key.split(".")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return {section: {name: value}}


def build_config(preset="demo", overrides=(), flat=None):
    """DEFAULTS <- preset/YAML <- `overrides` (list of 'key=value') <- `flat` {'train.lr': ...}."""
    config = copy.deepcopy(DEFAULTS)
    apply(config, load_preset(preset), f"preset {preset}")
    for text in overrides:
        apply(config, parse_assignment(text), f"--set {text}")
    for key, value in (flat or {}).items():
        if value is not None:
            section, name = key.split(".")
            apply(config, {section: {name: value}}, f"--{name.replace('_', '-')}")
    validate(config)
    return config


def validate(config):
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        if config[section][name] not in choices:
            raise ConfigError(
                f"Unknown {key} {config[section][name]!r}: valid values are {', '.join(choices)}."
            )
    from bnkeras.training.models import MODELS
    from bnkeras.training.models.norms import NORMS

    if config["model"]["name"] not in MODELS:
        raise ConfigError(
            f"Unknown model {config['model']['name']!r}: valid models are {', '.join(MODELS)}."
        )
    if config["norm"]["name"] not in NORMS:
        raise ConfigError(
            f"Unknown norm {config['norm']['name']!r}: valid norms are {', '.join(NORMS)}."
        )
    train = config["train"]
    for key in ("epochs", "batch_size"):
        if train[key] < 1:
            raise ConfigError(f"train.{key} must be >= 1. Received: {train[key]}")
    if train["lr"] <= 0:
        raise ConfigError(f"train.lr must be > 0. Received: {train['lr']}")
    if not 0.0 <= train["label_smoothing"] < 1.0:
        raise ConfigError(
            f"train.label_smoothing must be in [0, 1). Received: {train['label_smoothing']}"
        )
    if not 0.0 <= train["ema"] < 1.0:
        raise ConfigError(f"train.ema must be in [0, 1). Received: {train['ema']}")
    if train["precise_bn_batches"] < 0:
        raise ConfigError(
            f"train.precise_bn_batches must be >= 0. Received: {train['precise_bn_batches']}"
        )
    return config


def dump(config):
    return yaml.safe_dump(config, sort_keys=False)


def load_run_config(workdir):
    path = Path(workdir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(
            f"{workdir} holds no config.yaml: it is not a bnkeras training work directory."
        )
    config = copy.deepcopy(DEFAULTS)
    return apply(config, _read_yaml(path.read_text(), str(path)), str(path))


def differences(old, new):
    """'section.key: old -> new' for every key that differs."""
    changes = []
    for section, values in new.items():
        for key, value in values.items():
            before = old.get(section, {}).get(key)
            if before != value:
                changes.append((f"{section}.{key}", before, value))
    return changes
