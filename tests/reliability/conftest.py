"""Shared fixtures of the fault tests: one finished tiny run per session (copied by the
tests that damage it), file hashing, the CLI in process and as a real subprocess, and
small tmpfs mounts (root only) for full and read-only disks."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from bnkeras.training.config import build_config
from tests.conftest import cli, tree_hashes  # noqa: F401 - shared with the fault tests
from tests.training.conftest import (  # noqa: F401 - the session fixtures
    TWO_EPOCHS,
    finished_run,
    one_epoch_run,
    shapes_dir,
)

QUIET = {"progress": 0}


def tiny(data_dir, *overrides):
    return build_config("demo", [*TWO_EPOCHS, *overrides], {"data.data_dir": data_dir})


def train_args(workdir, data_dir, *overrides):
    """`bnkeras train` arguments of the tiny run (overrides are --set key=value)."""
    sets = [f"--set={s}" for s in [*TWO_EPOCHS, *overrides]]
    return ["train", "--workdir", str(workdir), "--data-dir", str(data_dir), *sets]


def wait_for(condition, process, seconds=300):
    """Polls `condition()` while the subprocess `process` runs (its stderr on failure)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def assert_stale_lock_does_not_block(workdir, pid):
    """The lock file of `workdir`'s holder `pid`, killed by SIGKILL, is still there
    with its PID, yet `run_dir.lock` takes it (the kernel dropped the flock) and
    removes it on release."""
    from bnkeras.training import workdir as run_dir

    lock = Path(workdir) / run_dir.LOCK
    assert lock.read_text().strip() == str(pid)  # the crash left the file ...
    with run_dir.lock(workdir):  # ... but not the lock
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()  # released on exit


def assert_clean_error(code, err, *names):
    """Exit code 2, one line on stderr naming every one of `names`, no traceback."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("bnkeras ")]
    assert len(lines) == 1, err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])


def spawn(*argv, **kwargs):
    """`bnkeras ARGV` as a real process (stdout discarded, stderr captured)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen(
        [sys.executable, "-m", "bnkeras", *map(str, argv)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def run_copy(finished_run, tmp_path):  # noqa: F811
    def make(name="run"):
        target = tmp_path / name
        shutil.copytree(finished_run, target)
        return target

    return make


@contextlib.contextmanager
def _tmpfs(size):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (the disk-full and read-only tests run as root)")
    mount = Path(tempfile.mkdtemp(prefix="bnkeras-tmpfs-"))
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode:
        mount.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
        mount.rmdir()


@pytest.fixture
def tmpfs():
    """A factory of small tmpfs mounts: `tmpfs("2m")` -> a mounted folder."""
    with contextlib.ExitStack() as stack:
        yield lambda size: stack.enter_context(_tmpfs(size))


def remount_read_only(mount):
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


def fill(folder, leave_bytes):
    """Writes a user file `filler.bin` in `folder` that leaves about `leave_bytes` free."""
    free = shutil.disk_usage(folder).free
    path = Path(folder) / "filler.bin"
    with open(path, "wb") as handle:
        handle.write(b"\0" * max(0, free - leave_bytes))
    return path
