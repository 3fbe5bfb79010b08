"""The `bnkeras` command: a parser without TensorFlow, quiet TensorFlow, logging, flags."""

import argparse
import os
import re
import signal
import subprocess
import sys
import warnings

import pytest

from bnkeras import _logging
from bnkeras.cli import build_parser, main
from bnkeras.training import cli as training_cli
from bnkeras.training import names

# A line TensorFlow's C++ logging (or absl before its initialization) writes to stderr.
TF_LOG = re.compile(
    r"^[IWEF]\d{4} |All log messages before absl::InitializeLog|oneDNN|cpu_feature_guard",
    re.MULTILINE,
)


@pytest.mark.parametrize(
    "argv,code",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["train", "--help"], 0),
        (["evaluate", "--help"], 0),
        (["export", "--help"], 0),
        (["train", "--workdir", "x", "--model", "vgg"], 2),
        (["--no-such-flag"], 2),
    ],
)
def test_parser_answers_without_tensorflow(argv, code):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bnkeras", *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == code, result.stderr
    imported = re.findall(r"\|\s+(\S+)$", result.stderr, re.MULTILINE)
    assert "bnkeras.cli" in imported
    assert not [m for m in imported if m.split(".")[0] in ("tensorflow", "keras")]
    assert not TF_LOG.search(result.stderr)


# How a process starts: a program's plain import, or as the `bnkeras` command (its
# sys.argv[0]; the command imports bnkeras.cli and builds its parser first).
_STARTS = {
    "program": "",
    "command": "sys.argv[0] = 'bnkeras'; import bnkeras.cli; bnkeras.cli.build_parser()",
}


def _python(code):
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("keras_first", [False, True], ids=["bnkeras_first", "keras_first"])
@pytest.mark.parametrize("start", _STARTS)
def test_one_import_behaviour_however_the_process_started(tmp_path, start, keras_first):
    """However the process started and whichever of bnkeras and Keras it imports first:
    `import bnkeras` is light (no TensorFlow); every name of the public `__all__`s is the
    function or class, never a submodule, also after the submodules that define them
    were imported; and `keras.saving.load_model` loads a file with bnkeras layers."""
    import keras

    import bnkeras

    path = tmp_path / "m.keras"
    keras.Sequential([keras.Input((3,)), bnkeras.GhostBatchNormalization(2)]).save(path)
    code = f"""
import importlib, inspect, sys
{_STARTS[start]}
{"import keras" if keras_first else ""}
import bnkeras
print("tensorflow" in sys.modules)
import keras
import bnkeras.training.evaluation, bnkeras.export.verification
from bnkeras.training import evaluate
from bnkeras.export import verify
for package in ("bnkeras", "bnkeras.export", "bnkeras.training"):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert not inspect.ismodule(getattr(module, name)), (package, name)
print(bnkeras.training.evaluate is evaluate, inspect.isfunction(evaluate))
print(bnkeras.export.verify is verify, inspect.isfunction(verify))
print(type(keras.saving.load_model({str(path)!r}).layers[0]).__name__)
"""
    light = str(keras_first)  # TensorFlow is there only where Keras came first
    assert _python(code) == [light, "True", "True", "True", "True", "GhostBatchNormalization"]


def test_help_lists_choices_and_every_argument_has_help(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            assert action.help, f"bnkeras {name} {action.option_strings or action.dest}"
    assert main(["train", "--help"]) == 0  # the code, as for every command
    out = " ".join(capsys.readouterr().out.split())
    for choice in (*names.MODELS, *names.NORMS, *names.STRATEGIES, "bfloat16", "auto"):
        assert choice in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "vgg"], "argument --model: invalid model 'vgg'"),
        (["--norm", "layer"], "argument --norm: invalid choice: 'layer'"),
        (["--strategy", "tpu"], "argument --strategy: invalid choice: 'tpu'"),
        (["--mixed-precision", "float8"], "argument --mixed-precision: invalid choice"),
        (["--jit-compile", "yes"], "argument --jit-compile: invalid choice: 'yes'"),
    ],
)
def test_bad_choice_is_an_argparse_error(capsys, argv, message):
    assert main(["train", "--workdir", "run", *argv]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv,expected",
    [
        ([], {}),
        (["--mixed-precision"], {"train.mixed_precision": "float16 on a GPU, else bfloat16"}),
        (["--mixed-precision", "bfloat16"], {"train.mixed_precision": "bfloat16"}),
        (["--jit-compile", "auto"], {"train.jit_compile": "auto"}),
        (["--jit-compile", "true"], {"train.jit_compile": True}),
        (["--jit-compile", "false"], {"train.jit_compile": False}),
        (
            ["--epochs", "3", "--norm", "ghost", "--sync-bn"],
            {"train.epochs": 3, "norm.name": "ghost", "norm.sync": True},
        ),
    ],
)
def test_train_flags_map_to_config_keys(argv, expected):
    args = build_parser().parse_args(["train", "--workdir", "run", *argv])
    if expected.get("train.mixed_precision") == training_cli.BARE_MIXED_PRECISION:
        from bnkeras.training.trainer import default_mixed_precision

        expected = {"train.mixed_precision": default_mixed_precision()}
    assert training_cli.config_overrides(args) == expected


def test_verbose_before_or_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["-v", "export", "m.keras", "--out", "o"]).verbose is True
    assert parser.parse_args(["export", "m.keras", "--out", "o", "--verbose"]).verbose is True
    assert parser.parse_args(["export", "m.keras", "--out", "o"]).verbose is False


def test_strategy_choices_are_the_config_choices():
    from bnkeras.training.config import ConfigError, build_config

    for name in names.STRATEGIES:
        assert build_config("demo", [f"train.strategy={name}"])["train"]["strategy"] == name
    with pytest.raises(ConfigError, match="train.strategy"):
        build_config("demo", ["train.strategy=tpu"])


def test_command_output_prints_info_on_stdout_and_warnings_on_one_line(capsys, monkeypatch):
    import logging

    for name in _logging.TF_QUIET_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    logger = logging.getLogger("bnkeras.training.trainer")
    showwarning = warnings.showwarning
    with _logging.command_output(verbose=False), warnings.catch_warnings():
        warnings.simplefilter("always")
        logger.info("epoch 1/2: loss 0.5")
        logger.debug("hidden")
        warnings.warn("an epoch has 2 steps:\n  use a smaller batch", UserWarning, stacklevel=1)
        assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    captured = capsys.readouterr()
    assert captured.out == "epoch 1/2: loss 0.5\n"
    assert captured.err == "warning: an epoch has 2 steps: use a smaller batch\n"
    with _logging.command_output(verbose=True):
        logger.debug("shown")
    assert capsys.readouterr().out == "shown\n"
    # Restored on exit: no handler left, records propagate again, warnings as before.
    assert logging.getLogger("bnkeras").handlers == []
    assert logging.getLogger("bnkeras").propagate and warnings.showwarning is showwarning


@pytest.mark.parametrize("first", [True, False], ids=["first_import", "imported_already"])
def test_the_commands_import_collects_no_garbage_and_leaves_the_collector_on(monkeypatch, first):
    """A command's first TensorFlow import runs without the garbage collector and freezes
    what it made; the collector is on again after it, also when the import fails. A
    process that imported TensorFlow already (a program calling `main`) keeps its
    collector and heap as they are."""
    import gc

    from bnkeras import cli as bnkeras_cli

    seen, frozen = [], []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    if first:
        monkeypatch.delitem(sys.modules, "tensorflow")

    def import_tensorflow(verbose=False, fail=False):
        seen.append(gc.isenabled())
        if fail:
            raise ImportError("no TensorFlow")

    monkeypatch.setattr(_logging, "import_tensorflow_quietly", import_tensorflow)
    bnkeras_cli._import_tensorflow_and_layers()
    assert seen == [not first] and gc.isenabled() and frozen == ([True] if first else [])
    monkeypatch.setattr(
        _logging, "import_tensorflow_quietly", lambda verbose: import_tensorflow(fail=True)
    )
    with pytest.raises(ImportError):
        bnkeras_cli._import_tensorflow_and_layers()
    assert gc.isenabled()


def test_tf_log_filter_keeps_other_lines():
    lines = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1795433902.608290   11155 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1795433941.832851   11610 util.cc:131] oneDNN supports DT_HALF only on",
        "W1123 11:33:52.123456   11610 cuda.cc:12] no GPU",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild "
        "TensorFlow with the appropriate compiler flags.",
    ]
    kept = ["Traceback (most recent call last):", "warning: I0000 is not a log line here"]
    assert [line for line in lines + kept if not _logging.TF_LOG_LINE.match(line)] == kept


def test_keras_imports_even_when_the_layers_cannot():
    """The registration after `import keras` never breaks Keras's own import: without what
    the layers need, the error comes with the first use of a layer."""
    code = """
import sys
sys.modules["bnkeras.layers"] = None  # as if the layers could not be imported
import bnkeras, keras
print(keras.__name__)
try:
    bnkeras.BatchNormalization
except ImportError:
    print("ImportError")
"""
    assert _python(code) == ["keras", "ImportError"]


def test_stop_signals_get_their_handlers_with_the_command_not_while_parsing(monkeypatch, capsys):
    """A stop signal sent once the command's handler is there (tests see it in /proc) must
    stop the command. When parsing installed the handlers too, a SIGHUP then ended only the
    parsing, and `bnkeras evaluate` ran on and exited 0."""
    import signal

    from bnkeras import cli as bnkeras_cli

    parser, seen = build_parser(), []
    parse = parser.parse_args

    def recording(argv):
        seen.append(signal.getsignal(signal.SIGHUP))
        return parse(argv)

    monkeypatch.setattr(parser, "parse_args", recording)
    monkeypatch.setattr(bnkeras_cli, "build_parser", lambda: parser)
    before = signal.getsignal(signal.SIGHUP)
    assert main(["--version"]) == 0
    assert seen == [before] and signal.getsignal(signal.SIGHUP) == before
    assert capsys.readouterr().out.startswith("bnkeras ")


_CAUGHT_IN_EXEC = """
import os, runpy, signal, sys
import bnkeras.cli  # imported first: an import may exec() code, which clears the flag
try:  # as a stop signal during an import that runs exec()'d code (a namedtuple)
    exec("os.kill(os.getpid(), signal.SIGINT)\\nsum(range(10**6))")
except KeyboardInterrupt:
    pass  # caught, as the command catches it
if sys.argv[1] == "bnkeras":
    sys.argv[1:] = ["--version"]
    runpy.run_module("bnkeras", run_name="__main__", alter_sys=True)
sys.exit(3)
"""


@pytest.mark.parametrize("then", ["bnkeras", "exit"])
def test_python_m_bnkeras_exits_with_its_status_after_a_caught_keyboard_interrupt(tmp_path, then):
    """CPython ends `python -m` by SIGINT after a KeyboardInterrupt that left exec()'d
    code, even a caught one ("exit": the quirk, as CPython has it). `bnkeras evaluate`
    stopped by SIGHUP during its imports exited -2 instead of 129 (1 run in 6 here);
    bnkeras/__main__.py clears the flag: `--version` then exits 0."""
    (tmp_path / "caught_in_exec.py").write_text(_CAUGHT_IN_EXEC)
    result = subprocess.run(
        [sys.executable, "-m", "caught_in_exec", then],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == (0 if then == "bnkeras" else -signal.SIGINT), result.stderr
