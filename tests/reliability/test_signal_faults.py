"""Every `bnkeras` command stopped by a real signal, or writing into a closed pipe or a
full device: one line (or none, for a closed pipe), the documented exit code, nothing
partial left and what was finished kept.

SIGTERM (a cluster's preemption) and SIGHUP act as Ctrl-C and exit 128 + the signal;
a closed stdout (`| head -1`) stops the command quietly with exit 141 (as SIGPIPE
stops other tools); a failed write of the output (/dev/full) is exit 2 and one line.
Signals go to real subprocesses at known moments: pause points (tests/_faults.py
wraps the product's functions in the test's subprocess), a seed written to results.json, or the handler seen
installed in /proc/PID/status.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bnkeras.training import workdir as run_dir
from bnkeras.training.trainer import read_log
from tests import _faults as faults
from tests.conftest import tree_hashes
from tests.reliability.conftest import cli, train_args, wait_for
from tests.reliability.test_export_faults import _save_model, old_export  # noqa: F401

_ID = lambda signum: signal.Signals(signum).name  # noqa: E731
_NAMES = {signal.SIGINT: "", signal.SIGTERM: " by SIGTERM", signal.SIGHUP: " by SIGHUP"}


def _start(tmp_path, *argv, pause_at=None, stdout=subprocess.DEVNULL):
    """`bnkeras ARGV` as a real process, stderr captured; with `pause_at`, it sleeps at
    that pause point of the product for 3 seconds (the file `paused` says when)."""
    env = faults.environment(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    command = [sys.executable, "-m", "bnkeras", *map(str, argv)]
    if pause_at:
        command = faults.command(pause_at, tmp_path / "paused", *argv, seconds=60)
    return subprocess.Popen(
        command,
        env=env,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_from_a_terminal,
    )


def _as_from_a_terminal():
    """SIGINT and SIGHUP at their defaults in the child, as a shell in a terminal starts a
    command: a suite run in the background (`nohup`, `&` without job control) passes them
    on ignored, and a command must then leave them ignored (it does: nohup's contract)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _catches(pid, signum):
    """True when process `pid` has a handler for `signum` (Linux: SigCgt of /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))[7:], 16)
    return bool(mask >> (signum - 1) & 1)


def _ended(process, code):
    """stderr of `process`, checked: exit `code`, no traceback or logging error."""
    assert process.wait(timeout=300) == code, process.stderr.read()
    err = process.stderr.read()
    for noise in ("Traceback", "KeyboardInterrupt", "Logging error", "BrokenPipeError"):
        assert noise not in err, err
    return err


def _ours(err):
    return [line for line in err.splitlines() if line.startswith("bnkeras ")]


# ---------------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=_ID)
def test_sigterm_and_sighup_stop_train_like_ctrl_c(shapes_dir, tmp_path, capsys, signum):
    """Before: killed at once, exit -15/-1 without a word. Now the step in progress ends,
    the last checkpoint stays, one line says where a rerun resumes; exit 128 + signal."""
    workdir = tmp_path / "run"
    args = train_args(workdir, shapes_dir, "train.epochs=3")
    process = _start(tmp_path, *args, pause_at="epoch 2 step 3")
    wait_for((tmp_path / "paused").exists, process)
    process.send_signal(signum)
    err = _ended(process, 128 + signum)
    assert _ours(err) == [
        f"bnkeras train: interrupted{_NAMES[signum]}; rerun the same command to resume from epoch 2"
    ], err
    assert json.loads((workdir / "checkpoints" / "state.json").read_text())["epoch"] == 1
    assert [int(r["epoch"]) for r in read_log(workdir)] == [1]
    assert not (workdir / run_dir.LOCK).exists() and not list(workdir.rglob(".*.tmp-*"))
    if signum == signal.SIGTERM:  # the rerun resumes; the command leaves no handler behind
        before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP), sys.stdout)
        code, out, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=2"))
        assert code == 0, err
        assert "resuming from epoch 1" in out
        assert [int(r["epoch"]) for r in read_log(workdir)] == [1, 2]
        after = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP), sys.stdout)
        assert after == before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=_ID)
def test_signals_during_export_leave_the_previous_export_and_no_partial_one(
    old_export,  # noqa: F811
    tmp_path,
    signum,
):
    """Stopped after writing the formats into its partial directory (before: Ctrl-C was a
    traceback, SIGTERM/SIGHUP killed it and left `.out.partial-PID` behind)."""
    out, new = old_export
    before = tree_hashes(out)
    argv = ["export", new, "--out", out, "--formats", "keras", "--overwrite"]
    process = _start(tmp_path, *argv, pause_at="after_write")
    wait_for((tmp_path / "paused").exists, process)
    process.send_signal(signum)
    err = _ended(process, 128 + signum)
    assert _ours(err) == [
        f"bnkeras export: interrupted{_NAMES[signum]}; no partial export is left at {out}: "
        "rerun the same command"
    ], err
    assert tree_hashes(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_sighup_stops_evaluate_with_one_line(finished_run, tmp_path):
    metrics = tmp_path / "metrics.json"
    process = _start(tmp_path, "evaluate", finished_run, "--json", metrics)
    wait_for(lambda: _catches(process.pid, signal.SIGHUP), process, seconds=60)
    process.send_signal(signal.SIGHUP)
    err = _ended(process, 128 + signal.SIGHUP)
    assert _ours(err) == ["bnkeras evaluate: interrupted by SIGHUP"], err
    assert not metrics.exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=_ID)
def test_signals_stop_reproduce_with_one_line_and_keep_the_finished_seeds(tmp_path, signum):
    """Before: Ctrl-C printed a 48-line traceback, SIGTERM killed it without a word."""
    workdir = tmp_path / "fig1"
    results = workdir / "results.json"
    process = _start(
        tmp_path, "reproduce", "fig1", "--quick", "--seeds", 1000, "--workdir", workdir
    )
    wait_for(results.exists, process)
    process.send_signal(signum)
    err = _ended(process, 128 + signum)
    assert _ours(err) == [
        f"bnkeras reproduce: interrupted{_NAMES[signum]}; the finished seeds are kept in "
        f"{workdir}: rerun the same command to go on"
    ], err
    seeds = json.loads(results.read_text())["seeds"]
    assert 1 <= len(seeds) < 1000


# ------------------------------------------------------------------------ pipes


def test_train_into_head_1_ends_quietly_with_141(shapes_dir, tmp_path):
    """`bnkeras train ... | head -1`: before, four logging BrokenPipeError tracebacks."""
    workdir = tmp_path / "run"
    process = _start(tmp_path, *train_args(workdir, shapes_dir), stdout=subprocess.PIPE)
    assert process.stdout.readline().startswith("data: ")
    process.stdout.close()  # what `head -1` does after its line
    err = _ended(process, 141)
    assert _ours(err) == [], err
    assert not (workdir / run_dir.LOCK).exists() and not list(workdir.rglob(".*.tmp-*"))


@pytest.mark.parametrize("command", ["evaluate", "export", "reproduce"])
def test_a_closed_stdout_ends_every_command_quietly_with_141(finished_run, tmp_path, command):
    argv = {
        "evaluate": ["evaluate", finished_run],
        "export": ["export", finished_run, "--out", tmp_path / "out", "--formats", "keras"],
        "reproduce": ["reproduce", "fig1", "--quick", "--workdir", tmp_path / "fig1"],
    }[command]
    process = _start(tmp_path, *argv, stdout=subprocess.PIPE)
    process.stdout.close()  # `| head -0`: closed before the command prints anything
    err = _ended(process, 141)
    assert _ours(err) == [], err
    assert not (tmp_path / "out").exists()  # the export stopped: nothing partial
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_output_to_a_full_device_is_exit_2_and_one_line(finished_run, tmp_path, command):
    """`bnkeras evaluate RUN > /dev/full`: before, exit 0 although nothing was written."""
    argv = {
        "evaluate": ["evaluate", finished_run],
        "export": ["export", finished_run, "--out", tmp_path / "out", "--formats", "keras"],
    }[command]
    with open("/dev/full", "w") as full:
        process = _start(tmp_path, *argv, stdout=full)
        err = _ended(process, 2)
    (line,) = _ours(err)
    assert line.startswith(f"bnkeras {command}: error: could not write to standard output")
    assert "No space left on device" in line


_HELP = {
    "help": ["--help"],
    "version": ["--version"],
    "no-command": [],
    "sub-help": ["export", "-h"],
}


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("argv", _HELP.values(), ids=_HELP)
def test_help_and_version_to_a_full_device_are_exit_2_and_one_line(tmp_path, argv):
    """`bnkeras --help > /dev/full`: before, exit 0 although nothing was written."""
    with open("/dev/full", "w") as full:
        err = _ended(_start(tmp_path, *argv, stdout=full), 2)
    assert err.splitlines() == [
        "bnkeras: error: could not write to standard output (No space left on device): "
        "its output is lost"
    ]


@pytest.mark.parametrize("argv", _HELP.values(), ids=_HELP)
def test_help_and_version_into_a_closed_pipe_end_quietly_with_141(tmp_path, argv):
    read, write = os.pipe()
    os.close(read)  # closed before the command starts: its first write fails
    try:
        process = _start(tmp_path, *argv, stdout=write)
    finally:
        os.close(write)
    assert _ended(process, 141) == ""
