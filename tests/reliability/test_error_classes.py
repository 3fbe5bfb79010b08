"""Unexpected errors are not bad input: user errors derive from `bnkeras.Error` (exit 2,
one line); any other exception is a bug (exit 1, one line naming the file that holds
the traceback; `--verbose` prints it). Bugs are injected from here, never through a
hook in the package."""

import ast
import importlib
import re
import shutil
import tempfile
from pathlib import Path

import keras
import pytest

import bnkeras
from tests.reliability.conftest import assert_clean_error, cli, train_args

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"bnkeras": "bnkeras", "training": "bnkeras.training", "export": "bnkeras.export"}


def _error_classes():
    """(module, class name) of every class named *Error or *State defined in the package."""
    found = []
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            module = ".".join([package, *path.relative_to(ROOT / folder).with_suffix("").parts])
            module = module.removesuffix(".__init__")
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and re.search(r"(Error|State)$", node.name):
                    found.append((module, node.name))
    return found


ERROR_CLASSES = _error_classes()


def test_the_scan_finds_the_known_error_classes():
    names = {name for _, name in ERROR_CLASSES}
    assert {"ConfigError", "DataError", "TrainingError", "WorkdirError", "ExportError"} <= names
    assert {"OutDirError", "FoldError", "ReproduceError", "DamagedState"} <= names


@pytest.mark.parametrize("module, name", ERROR_CLASSES, ids=[n for _, n in ERROR_CLASSES])
def test_every_error_class_of_the_package_is_a_bnkeras_error(module, name):
    cls = getattr(importlib.import_module(module), name)
    if not issubclass(cls, Exception):  # e.g. a dataclass of a check's state
        return
    assert issubclass(cls, bnkeras.Error), f"{module}.{name} does not derive from bnkeras.Error"


@pytest.mark.parametrize(
    "module, name, builtin",
    [
        ("bnkeras.training.config", "ConfigError", ValueError),
        ("bnkeras.training.trainer", "TrainingError", RuntimeError),
        ("bnkeras.export.pipeline", "ExportError", ValueError),
        ("bnkeras.experiments", "ReproduceError", ValueError),
    ],
)
def test_the_error_classes_keep_their_builtin_base(module, name, builtin):
    assert issubclass(getattr(importlib.import_module(module), name), builtin)


def test_the_module_defining_error_imports_nothing():
    """bnkeras.errors is cheap: no import at all (TensorFlow least of all)."""
    tree = ast.parse((ROOT / "bnkeras" / "errors.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert bnkeras.Error is importlib.import_module("bnkeras.errors").Error
    assert "Error" in bnkeras.__all__


# -------------------------------------------------------------- injected bugs


@pytest.fixture
def trace_dir(tmp_path, monkeypatch):
    """The temporary directory where the command saves tracebacks, for this test."""
    folder = tmp_path / "tmpdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _boom(error):
    def injected_bug(*args, **kwargs):
        raise error

    return injected_bug


# command -> (the function its `run` calls, argv)
COMMANDS = {
    "train": ("bnkeras.training.trainer.train_and_evaluate", ["train", "--workdir", "W"]),
    "evaluate": ("bnkeras.training.evaluation.evaluate", ["evaluate", "W"]),
    "export": ("bnkeras.export.pipeline.export_model", ["export", "m.keras", "--out", "W"]),
    "reproduce": ("bnkeras.experiments.runner.reproduce", ["reproduce", "fig1", "--workdir", "W"]),
}
BUGS = [KeyError("boom"), ValueError("boom"), RuntimeError("boom"), TypeError("boom")]


def _assert_bug_reported(code, err, command, error, trace_dir):
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("bnkeras ")]
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"bnkeras {command}: internal error ({type(error).__name__}"), line
    assert "bug in bnkeras" in line and "error: " not in line, line
    saved = [p for p in trace_dir.iterdir() if p.name.startswith(f"bnkeras-{command}-traceback-")]
    assert len(saved) == 1 and str(saved[0]) in line, (line, saved)
    text = saved[0].read_text()
    assert f" {command} " in text.splitlines()[0]  # the command line, then the traceback
    assert "Traceback (most recent call last)" in text and "injected_bug" in text, text
    return text


@pytest.mark.parametrize("error", BUGS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bug_exits_1_naming_the_saved_traceback(
    command, error, capsys, monkeypatch, tmp_path, trace_dir
):
    target, argv = COMMANDS[command]
    module, _, name = target.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, _boom(error))
    argv = [str(tmp_path / "W") if a == "W" else a for a in argv]
    code, out, err = cli(capsys, *argv)
    _assert_bug_reported(code, err, command, error, trace_dir)
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_verbose_prints_the_traceback_of_a_bug(command, capsys, monkeypatch, tmp_path, trace_dir):
    target, argv = COMMANDS[command]
    module, _, name = target.rpartition(".")
    monkeypatch.setattr(importlib.import_module(module), name, _boom(KeyError("boom")))
    argv = [str(tmp_path / "W") if a == "W" else a for a in argv]
    code, out, err = cli(capsys, "--verbose", *argv)
    text = _assert_bug_reported(code, err, command, KeyError("boom"), trace_dir)
    assert "Traceback (most recent call last)" in err and "injected_bug" in err, err
    assert text.split("\n", 1)[1].strip() in err  # the same traceback as the file's


def test_a_user_error_is_still_exit_2_and_one_line(capsys, monkeypatch, tmp_path, trace_dir):
    from bnkeras.training.data import DataError

    monkeypatch.setattr(
        importlib.import_module("bnkeras.training.trainer"),
        "train_and_evaluate",
        _boom(DataError("the data is not there")),
    )
    code, out, err = cli(capsys, "--verbose", "train", "--workdir", tmp_path / "W")
    assert_clean_error(code, err, "the data is not there")
    assert not list(trace_dir.iterdir())


# ---------------------- a bug where bad input is judged is reported as a bug


def test_a_bug_while_loading_a_checkpoint_is_not_a_checkpoint_that_does_not_fit(
    run_copy, shapes_dir, capsys, monkeypatch, trace_dir
):
    """The resume loaded the checkpoint under `except Exception`: any failure was
    'the checkpoint does not fit the model'."""
    run = run_copy()
    monkeypatch.setattr(keras.Model, "load_weights", _boom(AttributeError("boom")))
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "train.epochs=3"))
    _assert_bug_reported(code, err, "train", AttributeError("boom"), trace_dir)
    assert "does not fit" not in err


def test_a_checkpoint_of_another_model_is_still_a_user_error(run_copy, shapes_dir, capsys):
    run = run_copy()
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    for checkpoint in (run / "checkpoints").glob("epoch_*.keras"):
        other.save(checkpoint)
    code, out, err = cli(capsys, *train_args(run, shapes_dir, "train.epochs=3"))
    assert_clean_error(code, err, "does not fit the model of this config", "--overwrite")


def test_a_bug_in_the_dataset_library_is_not_an_unknown_dataset(
    tmp_path, shapes_dir, capsys, monkeypatch, trace_dir
):
    """TFDS's builder was called under `except Exception`: any failure was
    'Unknown dataset'."""
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds, "builder", _boom(RuntimeError("boom")))
    code, out, err = cli(capsys, *train_args(tmp_path / "run", shapes_dir))
    _assert_bug_reported(code, err, "train", RuntimeError("boom"), trace_dir)
    assert "Unknown dataset" not in err


@pytest.mark.parametrize(
    "name, message",
    [
        ("no_such_dataset", "Unknown dataset 'no_such_dataset'"),
        ("foo bar", "Unknown dataset 'foo bar'"),
        ("bnkeras_shapes/bad", "Unknown config 'bad' of dataset bnkeras_shapes"),
        ("bnkeras_shapes:9.9.9", "Unknown version '9.9.9' of dataset bnkeras_shapes"),
        ("no_such_namespace:mnist", "Unknown dataset 'no_such_namespace:mnist'"),
    ],
)
def test_a_bad_dataset_name_is_judged_and_named(tmp_path, shapes_dir, capsys, name, message):
    argv = train_args(tmp_path / "run", shapes_dir, f"data.dataset={name}")
    code, out, err = cli(capsys, *argv)
    assert_clean_error(code, err, message, f"Received: data.dataset={name!r}")


@pytest.mark.parametrize(
    "key, split, message",
    [
        ("train_split", "train[:abc]", "is not a split that TFDS can read"),
        ("train_split", "train[:200%]", "is not a split that TFDS can read"),
        ("train_split", "train[::2]", "is not a split that TFDS can read"),
        ("train_split", "train[:99999]", "is not a split that TFDS can read"),
        ("train_split", "train[:0]", "holds no examples"),
        ("train_split", "train[5:2]", "holds no examples"),
        ("eval_split", "test[:abc]", "is not a split that TFDS can read"),
    ],
)
def test_a_split_tfds_cannot_read_is_a_user_error(
    tmp_path, shapes_dir, capsys, trace_dir, key, split, message
):
    """TFDS's ValueError for a slice it cannot parse was exit 2 only because every
    ValueError was; it is judged where the split is read."""
    run = tmp_path / "run"
    code, out, err = cli(capsys, *train_args(run, shapes_dir, f"data.{key}={split}"))
    assert_clean_error(code, err, f"data.{key} {split!r}", message, f"Received: data.{key}=")
    assert not list(trace_dir.iterdir())
    assert not (run / "config.yaml").exists()


def test_a_bug_while_loading_a_model_file_is_not_a_file_that_cannot_be_loaded(
    finished_run, tmp_path, capsys, monkeypatch, trace_dir
):
    model = tmp_path / "model.keras"
    shutil.copy(finished_run / "model.keras", model)
    monkeypatch.setattr(keras.saving, "load_model", _boom(AttributeError("boom")))
    code, out, err = cli(capsys, "evaluate", model, "--dataset", "bnkeras_shapes")
    _assert_bug_reported(code, err, "evaluate", AttributeError("boom"), trace_dir)
    assert "could not be loaded" not in err
