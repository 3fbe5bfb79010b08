"""Run configuration: typed sections, YAML presets, overrides and validation.

A run's config has four sections, each a dataclass whose fields declare their
type and valid range next to the key: `ModelConfig`, `NormConfig`, `DataConfig`
and `TrainConfig`, gathered in `RunConfig`. The rest of the package passes the
config around as nested dicts (`config["train"]["lr"]`); `build_config` returns
one, validated through the dataclasses.

Precedence: the field defaults, then a preset (training/configs/NAME.yaml) or a
user YAML file, then `--set section.key=value` overrides, then the CLI flags.
Every key is checked when it is read, before any data is touched: an unknown key
lists the valid keys, a bad value raises a one-line `ConfigError` naming the
key, the received value and the valid range (`Received: data.image_size=0`).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.resources
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from bnkeras.errors import Error
from bnkeras.training.names import APPLICATIONS, MODELS, NORMS, STRATEGIES

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CHANNELS = 3  # the pipelines decode RGB images


class ConfigError(Error, ValueError):
    """An invalid config; the message names the key, the value and the valid values."""


# ------------------------------------------------------------------------ checks


def _error(key, valid, value):
    return ConfigError(f"Config key {key} must be {valid}. Received: {key}={value!r}")


def _number(key, value, valid, integer):
    """`value` as an int or a finite float; numeric strings ("1e-3") are parsed."""
    if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise _error(key, valid, value) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(key, valid, value)
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise _error(key, valid, value)
        return int(value)
    if not math.isfinite(value):
        raise _error(key, valid, value)
    return float(value)


def _bound(value):
    """A range bound as written in messages: integers in full (4294967295), floats as %g."""
    if value is None:
        return None
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    return f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Number:
    """An int (`integer=True`) or a finite float in [low, high]; `open_low` / `open_high`
    exclude the bound."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def describe(self):
        kind = "an integer" if self.integer else "a finite number"
        low, high = _bound(self.low), _bound(self.high)
        if self.low is not None and self.high is not None:
            left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
            return f"{kind} in {left}{low}, {high}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.open_low else '>='} {low}"
        if self.high is not None:
            return f"{kind} {'<' if self.open_high else '<='} {high}"
        return kind

    def __call__(self, key, value):
        number = _number(key, value, self.describe(), self.integer)
        too_low = self.low is not None and (
            number < self.low or (self.open_low and number == self.low)
        )
        too_high = self.high is not None and (
            number > self.high or (self.open_high and number == self.high)
        )
        if too_low or too_high:
            raise _error(key, self.describe(), value)
        return number


@dataclasses.dataclass(frozen=True)
class OrNull:
    """`check`, or null."""

    check: object

    def describe(self):
        return f"{self.check.describe()} or null"

    def __call__(self, key, value):
        if value is None:
            return None
        try:
            return self.check(key, value)
        except ConfigError:
            raise _error(key, self.describe(), value) from None


@dataclasses.dataclass(frozen=True)
class Boolean:
    def describe(self):
        return "true or false"

    def __call__(self, key, value):
        if not isinstance(value, bool):
            raise _error(key, self.describe(), value)
        return value


@dataclasses.dataclass(frozen=True)
class Text:
    """A non-empty string; `optional` also allows null. `path` also takes a number
    (YAML reads a folder named 2024 as an int)."""

    optional: bool = False
    path: bool = False

    def describe(self):
        kind = "a path" if self.path else "a non-empty string"
        return f"{kind} or null" if self.optional else kind

    def __call__(self, key, value):
        if value is None and self.optional:
            return None
        if self.path and isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value:
            raise _error(key, self.describe(), value)
        return value


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `values` (a tuple, or a function returning one, for lists that need
    an import). Booleans in `values` match YAML's true/false; `aliases` maps
    accepted spellings to the stored value. `label` names the key in the message."""

    values: tuple | object
    label: str | None = None
    aliases: tuple = ()

    def options(self):
        return self.values() if callable(self.values) else self.values

    def __call__(self, key, value):
        with contextlib.suppress(TypeError):  # a list or a mapping: never an alias
            value = dict(self.aliases).get(value, value)
        options = self.options()
        if any(value == option and type(value) is type(option) for option in options):
            return value
        valid = ", ".join(str(o).lower() if isinstance(o, bool) else str(o) for o in options)
        label, kinds = (self.label, f"{self.label}s") if self.label else (key, "values")
        raise ConfigError(
            f"Unknown {label} {value!r}: valid {kinds} are {valid}. Received: {key}={value!r}"
        )


@dataclasses.dataclass(frozen=True)
class ClipBound:
    """A renorm clip: "warmup" (the paper's schedule) or a number >= `low`."""

    low: float

    def __call__(self, key, value):
        if value == "warmup" or value == math.inf:  # the paper's schedule, or no clipping
            return value
        try:
            return Number(low=self.low)(key, value)
        except ConfigError:
            raise _error(key, f"'warmup' or a number >= {self.low:g}", value) from None


@dataclasses.dataclass(frozen=True)
class Numbers:
    """A list of numbers, each checked by `item`; `length` fixes the count,
    `increasing` asks for a strictly increasing list."""

    item: Number
    length: int | None = None
    increasing: bool = False

    def describe(self):
        count = f"{self.length} " if self.length else ""
        order = "strictly increasing " if self.increasing else ""
        return f"a list of {count}{order}numbers, each {self.item.describe()}"

    def __call__(self, key, value):
        if not isinstance(value, (list, tuple)) or (
            self.length is not None and len(value) != self.length
        ):
            raise _error(key, self.describe(), value)
        items = []
        for item in value:
            try:
                items.append(self.item(key, item))
            except ConfigError:
                raise _error(key, self.describe(), value) from None
        if self.increasing and any(b <= a for a, b in zip(items, items[1:], strict=False)):
            raise _error(key, self.describe(), value)
        return items


def key(default, check, doc=""):
    """A config field: its default, its check (type and range) and a short description."""
    if isinstance(default, list):
        return dataclasses.field(
            default_factory=lambda: list(default), metadata={"check": check, "doc": doc}
        )
    return dataclasses.field(default=default, metadata={"check": check, "doc": doc})


def _model_names():
    return MODELS


@dataclasses.dataclass(frozen=True)
class ModelName:
    """One of our models, or `keras.applications.NAME` (NAME checked when it is built)."""

    def describe(self):
        return f"one of {', '.join(MODELS)}, or keras.applications.NAME"

    def __call__(self, key, value):
        if isinstance(value, str) and value.startswith(APPLICATIONS) and value[len(APPLICATIONS) :]:
            return value
        return Choice(_model_names, label="model")(key, value)


def _norm_names():
    return NORMS


UNIT = Number(low=0.0, high=1.0, open_high=True)  # [0, 1)
FRACTION = Number(low=0.0, high=1.0, open_low=True)  # (0, 1]
# Every integer key has an upper bound: TensorFlow takes sizes and counts as int32
# (`MAX_INT32`), NumPy's and TensorFlow's seeds as uint32 (`MAX_SEED`).
MAX_INT32 = 2**31 - 1
MAX_SEED = 2**32 - 1
# Epoch e of data.seed s draws from the stream s * 1_000_003 + 2 * e (training/data.py,
# EPOCH_SEED_STRIDE): distinct for every (s, e) while e < 500_001.
MAX_EPOCHS = 500_000
MAX_IMAGE_SIZE = 16384
MAX_WIDTH = 4096  # first-stage filters of a CIFAR ResNet (16 in the paper)
MAX_ALPHA = 16.0  # MobileNetV2 width multiplier (1.0 in the paper)
COUNT = Number(integer=True, low=1, high=MAX_INT32)
NON_NEGATIVE_INT = Number(integer=True, low=0, high=MAX_INT32)
SEED = Number(integer=True, low=0, high=MAX_SEED)
EPOCHS = Number(integer=True, low=1, high=MAX_EPOCHS)


# ---------------------------------------------------------------------- sections


class Section:
    """Checks (and coerces) every field of a section dataclass on construction."""

    NAME = ""

    def __post_init__(self):
        for field in dataclasses.fields(self):
            name = f"{self.NAME}.{field.name}"
            setattr(self, field.name, field.metadata["check"](name, getattr(self, field.name)))


@dataclasses.dataclass
class ModelConfig(Section):
    NAME = "model"
    name: str = key(
        "resnet20", ModelName(), "the network: ours, or keras.applications.NAME (weights=None)"
    )
    width: int = key(
        16, Number(integer=True, low=1, high=MAX_WIDTH), "first-stage filters of CIFAR ResNets"
    )
    alpha: float = key(
        1.0,
        Number(low=0.0, high=MAX_ALPHA, open_low=True),
        "width multiplier of MobileNet (ours, V1-V3)",
    )
    zero_init_residual: bool = key(False, Boolean(), "zero gamma of each block's last norm")
    file: str | None = key(
        None, Text(optional=True, path=True), "a .keras classifier to train instead of model.name"
    )
    weights: str | None = key(
        None, Text(optional=True, path=True), "a .weights.h5 file loaded into the model"
    )
    head: str | None = key(
        None, Text(optional=True), "the layer giving the logits (null: the last Dense)"
    )


@dataclasses.dataclass
class NormConfig(Section):
    NAME = "norm"
    name: str = key("bn", Choice(_norm_names, label="norm"), "the norm layer of every block")
    momentum: float = key(0.9, UNIT, "moving-statistics momentum")
    epsilon: float = key(1e-5, Number(low=0.0, open_low=True), "added to the variance")
    sync: bool = key(False, Boolean(), "synchronized statistics across replicas")
    virtual_batch_size: int = key(32, COUNT, "ghost BN: examples per virtual batch")
    rmax: object = key("warmup", ClipBound(1.0), "renorm: upper clip of r")
    dmax: object = key("warmup", ClipBound(0.0), "renorm: clip of |d|")
    renorm_momentum: float = key(0.99, UNIT, "renorm: momentum of its r/d statistics")
    total_steps: int | None = key(
        None, OrNull(COUNT), "renorm: steps the 'warmup' schedule spans (null: the run's)"
    )
    freeze: bool = key(False, Boolean(), "BN in inference mode with fixed statistics (fine-tuning)")
    renorm_bias_correction: bool = key(
        True, Boolean(), "renorm: bias-corrected r/d statistics (the layer's default: false)"
    )


@dataclasses.dataclass
class DataConfig(Section):
    NAME = "data"
    dataset: str = key("bnkeras_shapes", Text(), "bnkeras_shapes, a TFDS name or 'folder'")
    data_dir: str | None = key(
        None, Text(optional=True, path=True), "TFDS data directory or image folder"
    )
    train_split: str = key("train", Text(), "split to train on")
    eval_split: str | None = key(None, Text(optional=True), "null: validation, else test")
    image_size: int = key(
        32, Number(integer=True, low=1, high=MAX_IMAGE_SIZE), "side of the square input images"
    )
    min_scale: float = key(0.35, FRACTION, "random-resized-crop area range (min_scale, 1)")
    crop_fraction: float = key(1.0, FRACTION, "eval: resize to size / crop_fraction, crop")
    holdout_fraction: float = key(
        0.1,
        Number(low=0.0, high=1.0, open_low=True, open_high=True),
        "folders without split folders (train/ and val/ or test/)",
    )
    mean: list = key(
        IMAGENET_MEAN, Numbers(Number(), length=CHANNELS), "per channel, on the 0-1 pixel scale"
    )
    std: list = key(
        IMAGENET_STD, Numbers(Number(low=0.0, open_low=True), length=CHANNELS), "per channel"
    )
    cache: bool = key(True, Boolean(), "keep decoded images in memory")
    shuffle_buffer: int = key(10000, COUNT, "examples in the shuffle buffer")
    seed: int = key(0, SEED, "shuffling and augmentation")


@dataclasses.dataclass
class TrainConfig(Section):
    NAME = "train"
    epochs: int = key(10, EPOCHS, "epochs to train")
    batch_size: int = key(128, COUNT, "global batch size")
    optimizer: str = key("sgd", Choice(("sgd", "adamw")), "SGD with momentum, or AdamW")
    lr: float = key(0.1, Number(low=0.0, open_low=True), "peak learning rate")
    lr_scaling: str = key("none", Choice(("none", "linear")), "linear: lr per 256 images")
    momentum: float = key(0.9, UNIT, "SGD momentum")
    nesterov: bool = key(True, Boolean(), "SGD: Nesterov momentum")
    weight_decay: float = key(5e-4, Number(low=0.0), "not applied to BN gamma/beta or biases")
    schedule: str = key(
        "cosine", Choice(("cosine", "step", "constant")), "learning rate after the warm-up"
    )
    warmup_epochs: int = key(
        1, Number(integer=True, low=0, high=MAX_EPOCHS), "linear warm-up from 0"
    )
    step_epochs: list = key(
        [30, 60, 80], Numbers(EPOCHS, increasing=True), "step schedule: lr x 0.1 at each"
    )
    label_smoothing: float = key(0.0, UNIT, "of the cross-entropy targets")
    ema: float = key(0.0, UNIT, "> 0: moving average of the weights (e.g. 0.999)")
    backbone_lr_multiplier: float = key(
        1.0,
        FRACTION,
        "model.file / keras.applications: lr (and weight decay) of all but the head, x this",
    )
    mixed_precision: object = key(
        False,
        Choice((False, "float16", "bfloat16"), aliases=((True, "float16"),)),
        "false, float16 or bfloat16 compute (true means float16)",
    )
    jit_compile: object = key("auto", Choice(("auto", True, False)), "XLA compilation")
    precise_bn_batches: int = key(0, NON_NEGATIVE_INT, "recompute BN statistics at the end")
    strategy: str = key("default", Choice(STRATEGIES), "tf.distribute strategy")
    seed: int = key(0, SEED, "weight initialization")


SECTIONS = {"model": ModelConfig, "norm": NormConfig, "data": DataConfig, "train": TrainConfig}


@dataclasses.dataclass
class RunConfig:
    """A whole run's config; construction checks every key."""

    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    norm: NormConfig = dataclasses.field(default_factory=NormConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)

    @classmethod
    def from_dict(cls, config, source="the config"):
        """A RunConfig from nested dicts; missing keys take their defaults."""
        merged = apply(copy.deepcopy(DEFAULTS), config, source)
        return cls(**{name: SECTIONS[name](**values) for name, values in merged.items()})

    def to_dict(self):
        return dataclasses.asdict(self)


def _defaults(section):
    return {
        f.name: f.default_factory() if callable(f.default_factory) else f.default
        for f in dataclasses.fields(section)
    }


DEFAULTS = {name: _defaults(section) for name, section in SECTIONS.items()}

# Keys that may differ when a run is resumed in the same work directory.
RESUMABLE_CHANGES = (
    "train.epochs",
    "data.data_dir",
    "train.precise_bn_batches",
    "train.strategy",
    "norm.sync",
    "train.jit_compile",
)


# ------------------------------------------------------------------------- files


def preset_names():
    files = importlib.resources.files("bnkeras.training") / "configs"
    return sorted(p.name[: -len(".yaml")] for p in files.iterdir() if p.name.endswith(".yaml"))


class DuplicateKeyError(Error, yaml.YAMLError):
    """A YAML mapping that holds a key twice (PyYAML alone keeps the last value)."""

    def __init__(self, path, first_line, second_line):
        self.path, self.lines = path, (first_line, second_line)
        super().__init__(f"the key {path} appears twice (lines {first_line} and {second_line})")


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping holding the same key twice
    (`train: {epochs: 1, epochs: 2}`), naming the key and both lines. Every YAML
    text bnkeras reads (presets, config files, run configs, --set values) goes
    through `load_yaml`, which uses it."""

    def get_single_node(self):
        node = super().get_single_node()
        if node is not None:
            _check_unique_keys(node, (), set())
        return node


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_unique_keys(node, path, seen_nodes):
    if id(node) in seen_nodes:  # an alias seen before (or a recursive one)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                name = ".".join([*path, key_node.value])
                if key_node.value in keys:
                    first = keys[key_node.value].start_mark.line + 1
                    raise DuplicateKeyError(name, first, key_node.start_mark.line + 1)
                keys[key_node.value] = key_node
                _check_unique_keys(value_node, (*path, key_node.value), seen_nodes)
            else:
                _check_unique_keys(value_node, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_unique_keys(
                item, (*path[:-1], f"{path[-1] if path else ''}[{index}]"), seen_nodes
            )


def load_yaml(text):
    """`yaml.safe_load` that raises `DuplicateKeyError` for a key given twice."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader


def _read_yaml(text, source):
    try:
        data = load_yaml(text) or {}
    except DuplicateKeyError as error:
        raise ConfigError(
            f"{source}: {error}; YAML would silently keep the last value: remove one."
        ) from None
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ConfigError(f"{source} is not valid YAML: {detail}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must hold a mapping of sections (model, norm, data, train).")
    return data


def _read_file(path, what):
    """The text of a YAML file, or a one-line ConfigError saying what is wrong."""
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a directory: give the path of a YAML file.")
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist.")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{what} {path} is not UTF-8 text (byte {error.object[error.start]:#04x} at "
            f"offset {error.start}): save it as UTF-8."
        ) from None
    except OSError as error:
        raise ConfigError(
            f"Cannot read {what.lower()} {path}: {error.strerror or error}."
        ) from None


def load_preset(name_or_path):
    """The overrides of a preset name or a YAML file path.

    A preset's name is the preset even where a file or folder of that name lies in the
    working directory (`--config demo` beside a `demo/` folder); a value with a
    `.yaml`/`.yml` suffix or a folder in it (`./demo`) is a path, and so is another
    name that exists."""
    path = Path(name_or_path)
    names = preset_names()
    text = os.fspath(name_or_path)
    is_path = path.suffix in (".yaml", ".yml") or "/" in text or os.sep in text
    if is_path or (name_or_path not in names and path.exists()):
        return _read_yaml(_read_file(path, "Config file"), str(path))
    if name_or_path not in names:
        raise ConfigError(
            f"Unknown preset {name_or_path!r}: valid presets are {', '.join(names)} (or a YAML file path)."
        )
    text = (
        importlib.resources.files("bnkeras.training") / "configs" / f"{name_or_path}.yaml"
    ).read_text(encoding="utf-8")
    return _read_yaml(text, f"preset {name_or_path}")


# --------------------------------------------------------------------- overrides


def valid_keys():
    return [f"{section}.{key}" for section, values in DEFAULTS.items() for key in values]


def check_value(section, name, value):
    """`value` of config key `section.name`, type-coerced; ConfigError if out of range."""
    field = next(f for f in dataclasses.fields(SECTIONS[section]) if f.name == name)
    return field.metadata["check"](f"{section}.{name}", value)


def apply(config, overrides, source):
    """`config` updated with a nested dict of overrides, every key and value checked."""
    for section, values in overrides.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"Unknown config section {section!r} in {source}: valid sections are {', '.join(SECTIONS)}."
            )
        if not isinstance(values, dict):
            raise ConfigError(f"Config section {section!r} in {source} must be a mapping.")
        for name, value in values.items():
            if name not in DEFAULTS[section]:
                raise ConfigError(
                    f"Unknown config key {section}.{name} in {source}: valid keys are {', '.join(valid_keys())}."
                )
            config[section][name] = check_value(section, name, value)
    return config


def parse_assignment(text):
    """'train.lr=0.05' -> {'train': {'lr': 0.05}} (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. train.lr=0.05). Received: {text!r}")
    name, raw = text.split("=", 1)
    if name.count(".") != 1:
        raise ConfigError(
            f"--set keys are section.key (e.g. train.lr). Received: {name!r}; valid keys are {', '.join(valid_keys())}."
        )
    section, name = name.split(".")
    try:
        value = load_yaml(raw)
    except DuplicateKeyError as error:
        raise ConfigError(f"--set {text}: {error} in the value: remove one.") from None
    except yaml.YAMLError:
        value = raw
    return {section: {name: value}}


# The `bnkeras train` flags whose name is not the key's last part (--epochs is train.epochs).
FLAG_NAMES = {"model.name": "--model", "norm.name": "--norm", "norm.sync": "--sync-bn"}


def build_config(
    preset: str | os.PathLike = "demo",
    overrides: Iterable[str] = (),
    flat: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Defaults <- preset/YAML <- `overrides` (list of 'key=value') <- `flat` {'train.lr': ...}.

    Returns the config as nested dicts; raises ConfigError for any bad key or value.
    """
    config = copy.deepcopy(DEFAULTS)
    apply(config, load_preset(preset), f"preset {preset}")
    for text in overrides:
        apply(config, parse_assignment(text), f"--set {text}")
    for name, value in (flat or {}).items():
        if value is not None:
            section, option = name.split(".")
            flag = FLAG_NAMES.get(name, f"--{option.replace('_', '-')}")
            try:
                apply(config, {section: {option: value}}, flag)
            except ConfigError as error:  # named as the user gave it: the flag
                raise ConfigError(f"{flag}: {error}") from None
    return validate(config)


def validate(config):
    """`config` (nested dicts) checked key by key through RunConfig, as nested dicts."""
    return RunConfig.from_dict(config).to_dict()


def dump(config):
    return yaml.safe_dump(config, sort_keys=False)


def load_run_config(workdir):
    """The validated config of the run in `workdir` (its config.yaml)."""
    path = Path(workdir) / "config.yaml"
    if not path.exists():
        raise ConfigError(
            f"{workdir} holds no config.yaml: it is not a bnkeras training work directory."
        )
    config = copy.deepcopy(DEFAULTS)
    apply(config, _read_yaml(_read_file(path, "Run config"), str(path)), str(path))
    return validate(config)


def differences(old, new):
    """'section.key: old -> new' for every key that differs."""
    changes = []
    for section, values in new.items():
        for name, value in values.items():
            before = old.get(section, {}).get(name)
            if before != value:
                changes.append((f"{section}.{name}", before, value))
    return changes
