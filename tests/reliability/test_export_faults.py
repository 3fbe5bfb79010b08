"""`bnkeras export` under real faults: kill -9 at named moments, a full disk, a read-only disk.

Kills use a real subprocess paused at a named point (tests/_faults.py wraps the product's
function there with a real sleep); disks are real tmpfs mounts (root only, skipped otherwise).
"""

import json
import os
import shutil
import signal
import subprocess
import time

import keras
import pytest
import yaml

import bnkeras
from bnkeras.cli import main
from bnkeras.export import outdir
from tests import _faults as faults
from tests.conftest import tree_hashes
from tests.training.conftest import one_epoch_copy  # noqa: F401 - fixture


def _save_model(path, units=4, dense=2):
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(units, 3),
            bnkeras.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(dense),
        ]
    )
    model.save(path)
    return path


def _export(source, out, *extra):
    return main(["export", str(source), "--out", str(out), "--formats", "keras", *extra])


@pytest.fixture
def old_export(tmp_path):
    """(out, source of the new export): `out` holds a finished export of another model."""
    old = _save_model(tmp_path / "old.keras", units=4)
    out = tmp_path / "out"
    assert _export(old, out) == 0
    return out, _save_model(tmp_path / "new.keras", units=6)


def _paused(argv, point, tmp_path):
    """A real process of `argv` (bnkeras arguments or `-c SCRIPT ...`) stopped at the
    pause point `point` (tests/_faults.py)."""
    flag = tmp_path / f"paused-{point}"
    env = faults.environment(TF_CPP_MIN_LOG_LEVEL="3")
    log = open(tmp_path / f"{point}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(faults.command(point, flag, *argv), env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 300
    while not flag.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            log.close()
            pytest.fail(f"never paused at {point}: {(tmp_path / f'{point}.log').read_text()}")
        time.sleep(0.1)
    return process, log


def _kill(process, log):
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    log.close()


def _source_of(out):
    assert outdir.is_export(out)
    keras.saving.load_model(out / "model_folded.keras")  # complete and loadable
    return json.loads((out / "report.json").read_text())["source"]


@pytest.mark.parametrize(
    "point, holds",
    [("after_write", "old"), ("before_move", "old"), ("after_exchange", "new")],
)
def test_kill_during_overwrite_leaves_old_or_new_export(old_export, tmp_path, point, holds):
    out, new = old_export
    argv = ["export", str(new), "--out", str(out), "--formats", "keras"]
    process, log = _paused([*argv, "--overwrite"], point, tmp_path)
    _kill(process, log)
    expected = str(tmp_path / "old.keras") if holds == "old" else str(new)
    assert _source_of(out) == expected
    leftover = tmp_path / f".out.partial-{process.pid}"
    assert leftover.is_dir()  # what the killed export left behind ...
    assert _export(new, out, "--overwrite") == 0
    assert not leftover.exists()  # ... is cleaned by the next export
    assert _source_of(out) == str(new)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_kill_between_the_fallback_renames_restores_the_old_export(old_export, tmp_path):
    """Without RENAME_EXCHANGE, a kill between the two renames leaves no --out; the next
    export (or `clean_leftovers`) renames the backup back."""
    out, new = old_export
    assert _export(new, tmp_path / "new_export") == 0
    before = tree_hashes(out)
    script = (
        "import os, sys; from pathlib import Path; from bnkeras.export import outdir\n"
        "out = Path(sys.argv[1]); partial = outdir.make_partial(out)\n"
        "for entry in Path(sys.argv[2]).iterdir(): os.rename(entry, partial / entry.name)\n"
        "(partial / outdir.MARKER).unlink(); outdir.replace_by_renames(partial, out)\n"
    )
    process, log = _paused(
        ["-c", script, str(out), str(tmp_path / "new_export")], "after_backup", tmp_path
    )
    _kill(process, log)
    assert not out.exists()
    assert (tmp_path / f".out.backup-{process.pid}").is_dir()
    outdir.clean_leftovers(out)
    assert tree_hashes(out) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MB tmpfs mounted at tmp_path/disk (root only)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _one_line_error(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("fmt", ["keras", "saved_model", "onnx"])
def test_full_disk_is_one_line_and_keeps_the_previous_export(tmpfs, tmp_path, capsys, fmt):
    out = tmpfs / "export"
    assert _export(_save_model(tmp_path / "small.keras"), out) == 0
    before = tree_hashes(out)
    big = _save_model(tmp_path / "big.keras", dense=5000)  # 2.9 MB of weights
    argv = ["export", str(big), "--out", str(out), "--overwrite", "--formats", fmt]
    assert main(argv) == 2
    err = _one_line_error(capsys)
    assert f"--out {out}: No space left on device" in err
    assert tree_hashes(out) == before
    assert sorted(p.name for p in tmpfs.iterdir()) == ["export"]  # the partial export is gone


def test_read_only_disk_is_one_line_and_keeps_the_previous_export(tmpfs, tmp_path, capsys):
    source = _save_model(tmp_path / "small.keras")
    out = tmpfs / "export"
    assert _export(source, out) == 0
    before = tree_hashes(out)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    assert _export(source, out, "--overwrite") == 2
    assert f"--out {out}: Read-only file system" in _one_line_error(capsys)
    assert _export(source, tmpfs / "new") == 2
    assert f"--out {tmpfs / 'new'}: Read-only file system" in _one_line_error(capsys)
    assert tree_hashes(out) == before
    assert sorted(p.name for p in tmpfs.iterdir()) == ["export"]


def test_export_says_why_a_runs_data_could_not_be_read(one_epoch_copy, tmp_path, capsys):  # noqa: F811
    workdir = one_epoch_copy
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    data_dir = tmp_path / "data"  # the run's data, moved where this test may remove it
    shutil.copytree(config["data"]["data_dir"], data_dir)
    config["data"]["data_dir"] = str(data_dir)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    assert _export(workdir, tmp_path / "with_data") == 0
    assert "verification inputs: a batch of 8 from the run's evaluation data" in (
        capsys.readouterr().out
    )
    shutil.rmtree(data_dir)
    data_dir.write_text("a file where the data folder was")  # not regenerated
    assert _export(workdir, tmp_path / "without_data") == 0
    printed = capsys.readouterr().out
    line = [x for x in printed.splitlines() if x.startswith("verification inputs")][0]
    assert line.startswith(
        "verification inputs: random normal inputs, batch 8, because the run's data could not "
        "be read ("
    )
    assert str(data_dir) in line
    report = json.loads((tmp_path / "without_data" / "report.json").read_text())
    assert report["inputs"].startswith("random inputs (the run's data could not be read")
