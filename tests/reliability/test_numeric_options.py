"""Every numeric option of every command, and every numeric config key, is checked
like the config keys: a bad value is exit 2 and one line naming the option, the value
received and the valid range, before any work. Out of memory is one line naming the
keys to lower, and the corrected command then runs without --overwrite. A YAML key
given twice is an error naming the key and the file."""

import argparse
import dataclasses
import re

import keras
import pytest
import tensorflow as tf

from bnkeras.cli import build_parser
from bnkeras.training import config as config_module
from bnkeras.training.config import ConfigError, Number, Numbers, OrNull, build_config
from tests.reliability.conftest import assert_clean_error, cli, train_args, tree_hashes

HUGE = "99999999999999999999"


def _numeric_options():
    """(command, flag, type) of every int/float option of every subcommand."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, sub_parser in sub.choices.items():
        for action in sub_parser._actions:
            if action.type in (int, float):
                found.append((command, action.option_strings[-1], action.type))
    return found


# (command, flag) -> values that must be refused (each is also checked to name the flag).
BAD = {
    ("train", "--epochs"): ["0", "-1", HUGE],
    ("train", "--batch-size"): ["0", "-1", HUGE],
    ("train", "--lr"): ["0", "-1", "nan", "inf", "1e400"],
    ("train", "--precise-bn-batches"): ["-1", HUGE],
    ("evaluate", "--batch-size"): ["0", "-1", HUGE],
    ("evaluate", "--image-size"): ["0", "-1", HUGE],
    ("export", "--opset"): ["0", "-1", HUGE],
    ("export", "--rtol"): ["-1", "nan", "inf"],
    ("export", "--atol"): ["-1", "nan", "inf"],
    ("export", "--batch-size"): ["0", "-1", HUGE],
    ("export", "--int8-max-drop"): ["-1", "nan", "inf", "101"],
    ("reproduce", "--seeds"): ["0", "-1", HUGE],
}


def test_every_numeric_option_has_its_bad_values_listed():
    """Closes the class: a new numeric option fails here until its checks are listed."""
    assert {(c, f) for c, f, _ in _numeric_options()} == set(BAD)


def _argv(command, tmp_path):
    """Arguments that fail at once after the option checks (an unknown dataset, a
    missing source, a workdir that is a file): a value let through ends fast too."""
    return {
        "train": ["train", "--workdir", tmp_path / "run", "--dataset", "no_such_dataset"],
        "evaluate": ["evaluate", tmp_path / "run"],
        "export": ["export", tmp_path / "model.keras", "--out", tmp_path / "out"],
        "reproduce": ["reproduce", "fig1", "--workdir", tmp_path / "notes.txt"],
    }[command]


CASES = [(c, f, v) for (c, f), values in BAD.items() for v in values]


@pytest.mark.parametrize("command, flag, value", CASES, ids=[" ".join(c) for c in CASES])
def test_a_bad_numeric_option_is_one_line_naming_it(command, flag, value, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("the user's file")
    before = tree_hashes(tmp_path)
    code, out, err = cli(capsys, *_argv(command, tmp_path), f"{flag}={value}")
    assert_clean_error(code, err, flag, "Received: ")
    line = err.strip().splitlines()[-1]
    shown = {"1e400": "inf", HUGE: HUGE}.get(value, value).lstrip("-").replace(".0", "")
    assert shown in line, line  # the value received
    assert "[" in line or ">" in line, line  # and the valid range
    assert tree_hashes(tmp_path) == before


# ------------------------------------------------------------- every config key


def _numeric_keys():
    """(key, check) of every numeric config key, lists of numbers included."""
    keys = []
    for section, cls in config_module.SECTIONS.items():
        for field in dataclasses.fields(cls):
            check = field.metadata["check"]
            check = check.check if isinstance(check, OrNull) else check
            check = check.item if isinstance(check, Numbers) else check
            if isinstance(check, Number):
                keys.append((f"{section}.{field.name}", check))
    return keys


NUMERIC_KEYS = _numeric_keys()
INTEGER_KEYS = [k for k, check in NUMERIC_KEYS if check.integer]


def test_every_integer_key_has_an_upper_bound():
    assert "data.seed" in INTEGER_KEYS and "train.seed" in INTEGER_KEYS
    assert [k for k, check in NUMERIC_KEYS if check.integer and check.high is None] == []


def _assignment(key, value):
    default = config_module.DEFAULTS[key.split(".")[0]][key.split(".")[1]]
    return f"{key}=[{value}]" if isinstance(default, list) else f"{key}={value}"


@pytest.mark.parametrize("key", INTEGER_KEYS)
@pytest.mark.parametrize("value", [HUGE, "18446744073709551616", "-1"])
def test_an_integer_key_out_of_range_names_the_key_and_range(key, value):
    with pytest.raises(ConfigError, match=rf"{key} must be .*integer in \[\d+, \d+\]") as info:
        build_config("demo", [_assignment(key, value)])
    assert f"Received: {key}=" in str(info.value) and value in str(info.value)


@pytest.mark.parametrize(
    "assignment, message",
    [
        (
            f"data.seed={HUGE}",
            rf"data.seed must be an integer in \[0, 4294967295\]. "
            rf"Received: data.seed={HUGE}$",
        ),
        (
            "train.seed=2**64",
            r"train.seed must be an integer in \[0, 4294967295\]. "
            r"Received: train.seed='2\*\*64'$",
        ),
        ("train.seed=18446744073709551616", r"Received: train.seed=18446744073709551616$"),
        ("train.seed=4294967296", r"Received: train.seed=4294967296$"),
    ],
)
def test_seeds_beyond_what_numpy_and_tensorflow_take(
    assignment, message, tmp_path, shapes_dir, capsys
):
    """Once a StagingError of the data pipeline, or NumPy's message naming no key."""
    run = tmp_path / "run"
    code, out, err = cli(capsys, *train_args(run, shapes_dir, assignment))
    assert_clean_error(code, err)
    assert re.search(message, err.strip()), err
    assert not run.exists()


def test_the_largest_seed_is_accepted():
    config = build_config("demo", ["train.seed=4294967295", "data.seed=4294967295"])
    assert config["train"]["seed"] == config["data"]["seed"] == 2**32 - 1


def test_a_flag_names_itself_and_its_key(tmp_path, capsys):
    code, out, err = cli(capsys, *_argv("train", tmp_path), "--batch-size", "0")
    assert_clean_error(code, err, "--batch-size", "train.batch_size", "Received: ")


# ------------------------------------------------------------- out of memory


def test_a_batch_larger_than_the_machine_is_refused_before_any_work(tmp_path, shapes_dir, capsys):
    """`--set data.image_size=10000` ran 83 s, took 4.5 GB and ended in a 73-line
    ResourceExhaustedError; now judged from the config (a batch of 1024 images of
    10000x10000 needs 1.1 TiB)."""
    run = tmp_path / "run"
    argv = train_args(run, shapes_dir, "data.image_size=10000", "train.batch_size=1024")
    code, out, err = cli(capsys, *argv, "--dataset", "no_such_dataset")  # judged before data
    assert_clean_error(code, err, "data.image_size", "train.batch_size", "GiB")
    assert "Received: data.image_size=10000, train.batch_size=1024" in err
    assert not (run / "config.yaml").exists()
    assert cli(capsys, *train_args(run, shapes_dir))[0] == 0  # corrected: no --overwrite


def test_evaluate_judges_its_batch_by_the_same_rule(tmp_path, capsys):
    inputs = keras.Input((None, None, 3))  # a model that takes any image size
    outputs = keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "any_size.keras")
    argv = ["--image-size", "16384", "--batch-size", "100000", "--dataset", "no_such_dataset"]
    code, out, err = cli(capsys, "evaluate", tmp_path / "any_size.keras", *argv)  # before data
    assert_clean_error(code, err, "--image-size", "--batch-size", "GiB")


@pytest.mark.parametrize("error", ["tf", "python"])
def test_out_of_memory_while_training_names_the_keys_and_the_rerun_takes_a_new_config(
    error, tmp_path, shapes_dir, capsys, monkeypatch
):
    """Out of memory in the first epoch (injected: a real one takes minutes and GBs)
    is one line naming the keys to lower; the run wrote its config, and the corrected
    command (another image size) then runs without --overwrite."""
    fit = keras.Model.fit

    def out_of_memory(*args, **kwargs):
        if error == "tf":
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        raise MemoryError()

    monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    run = tmp_path / "run"
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "data.image_size=24"))
    assert_clean_error(
        code, err, "Out of memory", "data.image_size=24", "train.batch_size=32", "model.width=4"
    )
    assert "no --overwrite" in err
    assert (run / "config.yaml").exists()  # written before the first epoch
    monkeypatch.setattr(keras.Model, "fit", fit)
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "data.image_size=16"))
    assert code == 0, err
    assert "image_size: 16" in (run / "config.yaml").read_text()


def test_out_of_memory_after_a_completed_epoch_keeps_the_run(
    run_copy, shapes_dir, capsys, monkeypatch
):
    """Resuming (epoch 3 of a 2-epoch run) out of memory: the keys are named, the
    checkpoints are untouched, and the message does not promise a config change."""

    def out_of_memory(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    run = run_copy()
    checkpoints = tree_hashes(run / "checkpoints")
    monkeypatch.setattr(keras.Model, "fit", out_of_memory)
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "train.epochs=3"))
    assert_clean_error(
        code,
        err,
        "Out of memory after 2 completed epoch(s)",
        "data.image_size=16",
        "checkpoint of epoch 2 is kept",
        "another --workdir",
    )
    assert tree_hashes(run / "checkpoints") == checkpoints


def test_a_run_with_a_completed_epoch_still_refuses_another_config(run_copy, shapes_dir, capsys):
    run = run_copy()
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "data.image_size=8"))
    assert_clean_error(code, err, "another config", "data.image_size")


# ------------------------------------------------------------- duplicated YAML keys


@pytest.mark.parametrize(
    "text, key, lines",
    [
        ("train: {epochs: 1, epochs: 2}\n", "train.epochs", "lines 1 and 1"),
        ("train:\n  epochs: 1\n  lr: 0.1\n  epochs: 2\n", "train.epochs", "lines 2 and 4"),
        ("train: {epochs: 1}\ndata: {}\ntrain: {lr: 0.1}\n", "train", "lines 1 and 3"),
        (
            "train:\n  step_epochs: [1, 2]\n  step_epochs: [3]\n",
            "train.step_epochs",
            "lines 2 and 3",
        ),
    ],
)
def test_a_yaml_key_given_twice_names_the_key_and_the_file(tmp_path, capsys, text, key, lines):
    path = tmp_path / "my config.yaml"
    path.write_text(text)
    argv = ["train", "--workdir", tmp_path / "run", "--config", path, "--dataset", "no_such"]
    code, out, err = cli(capsys, *argv)
    assert_clean_error(code, err, str(path), f"the key {key} appears twice ({lines})")
    assert not (tmp_path / "run").exists()


def test_a_yaml_merge_key_is_not_a_duplicate():
    loaded = config_module.load_yaml("a: &b {epochs: 3, lr: 0.1}\ntrain:\n  <<: *b\n  epochs: 2\n")
    assert loaded["train"] == {"epochs": 2, "lr": 0.1}


def test_a_run_config_with_a_key_twice_is_refused_by_evaluate(run_copy, capsys):
    run = run_copy()
    config = run / "config.yaml"
    config.write_text(config.read_text() + "train:\n  epochs: 7\n")
    code, out, err = cli(capsys, "evaluate", run)
    assert_clean_error(code, err, str(config), "the key train appears twice")


def test_a_set_value_with_a_key_twice_is_refused(tmp_path, capsys):
    argv = [*_argv("train", tmp_path), "--set", "train.step_epochs={a: 1, a: 2}"]
    code, out, err = cli(capsys, *argv)
    assert_clean_error(code, err, "--set train.step_epochs", "the key a appears twice")
