"""`bnkeras train` under bad input and faults: each case exits with one clean line (or
recovers, saying so) and leaves every file the user had intact."""

import json
import random
import shutil
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

from bnkeras.training import manifest
from bnkeras.training import workdir as run_dir
from bnkeras.training.trainer import LOG_FIELDS, read_log, train_and_evaluate
from tests.reliability.conftest import (
    QUIET,
    assert_clean_error,
    assert_stale_lock_does_not_block,
    cli,
    fill,
    remount_read_only,
    spawn,
    tiny,
    train_args,
    tree_hashes,
    wait_for,
)

# Resuming from another checkpoint than the last is a UserWarning, which the command
# prints as one `warning: ...` line on stderr (the suite turns bnkeras warnings into errors).
_SHOW_RECOVERY = "always:.*resuming from the:UserWarning"


def _epochs(workdir):
    return [int(r["epoch"]) for r in read_log(workdir)]


def _state(workdir):
    return json.loads((workdir / "checkpoints" / "state.json").read_text())


# ------------------------------------------------------------------ --overwrite


def test_overwrite_deletes_only_the_runs_own_files(run_copy, shapes_dir, capsys):
    workdir = run_copy()
    (workdir / "notes.txt").write_text("my notes")
    (workdir / "photos").mkdir()
    (workdir / "photos" / "cat.png").write_bytes(b"\x89PNG not really")
    (workdir / ".my-settings").write_text("x")
    mine = {
        k: v for k, v in tree_hashes(workdir).items() if k.startswith(("notes", "photos", ".my"))
    }
    code, _, err = cli(
        capsys, *train_args(workdir, shapes_dir, "model.width=8", "train.epochs=1"), "--overwrite"
    )
    assert code == 0, err
    after = tree_hashes(workdir)
    assert {k: after[k] for k in mine} == mine
    assert yaml.safe_load((workdir / "config.yaml").read_text())["model"]["width"] == 8
    assert _epochs(workdir) == [1] and _state(workdir)["epoch"] == 1
    assert not (workdir / run_dir.LOCK).exists()


def _user_files_in_run_folders(workdir):
    """User files inside the run's own folders, at several depths; their tree_hashes."""
    files = {
        "checkpoints/my_backup.keras": b"the user's own model",
        "checkpoints/NOTES.txt": b"lr 0.1 was better",
        "checkpoints/epoch_0099.keras": b"a copy named like a checkpoint",
        "checkpoints/old/epoch_0001.keras": b"an older run's checkpoint",
        "tensorboard/other/events.out.tfevents.1.host.1.0.v2": b"another experiment",
        "tensorboard/train/notes/readme.md": b"deep",
    }
    for name, data in files.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(data)
    return {k: v for k, v in tree_hashes(workdir).items() if k in files}


@pytest.mark.parametrize("listed", [True, False], ids=["listed", "run-from-before-the-list"])
def test_overwrite_keeps_user_files_inside_the_runs_folders(run_copy, shapes_dir, capsys, listed):
    """--overwrite deletes what the run wrote in checkpoints/ and tensorboard/, keeps the
    rest at every depth and names it; a run made before runs listed their files (no
    manifest) is cleared by the names a run writes there."""
    workdir = run_copy()
    if not listed:
        manifest.path(workdir).unlink()
    old_events = sorted((workdir / "tensorboard").rglob("events.out.tfevents.*"))
    assert old_events
    mine = _user_files_in_run_folders(workdir)
    code, out, err = cli(
        capsys, *train_args(workdir, shapes_dir, "model.width=8", "train.epochs=1"), "--overwrite"
    )
    assert code == 0, err
    after = tree_hashes(workdir)
    assert {k: after.get(k) for k in mine} == mine
    assert "kept 6 file(s) that the run did not write" in out
    assert "checkpoints/my_backup.keras" in out
    assert not any(p.exists() for p in old_events)  # the old run's own event files went
    assert sorted(p.name for p in (workdir / "checkpoints").glob("epoch_*.keras")) == [
        "epoch_0001.keras",
        "epoch_0099.keras",
    ]
    assert manifest.written(workdir) >= {"checkpoints/epoch_0001.keras", "checkpoints/state.json"}
    assert not manifest.written(workdir) & set(mine)


def test_checkpoint_rotation_keeps_user_files_named_like_checkpoints(run_copy, shapes_dir, capsys):
    """Resuming rotates only the run's own checkpoints (a user's epoch_*.keras stays)."""
    workdir = run_copy()
    mine = _user_files_in_run_folders(workdir)
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert code == 0, err
    after = tree_hashes(workdir)
    assert {k: after.get(k) for k in mine} == mine
    assert _state(workdir)["epoch"] == 3


def test_a_folder_with_files_no_run_wrote_is_refused(shapes_dir, tmp_path, capsys):
    workdir = tmp_path / "mine"
    workdir.mkdir()
    (workdir / "model.keras").write_bytes(b"the user's own model")
    (workdir / "log.csv").write_text("date,weight\n2024-01-01,70\n")
    before = tree_hashes(workdir)
    for extra in ([], ["--overwrite"]):
        code, _, err = cli(capsys, *train_args(workdir, shapes_dir), *extra)
        assert_clean_error(code, err, workdir, "model.keras", "log.csv", "another --workdir")
        assert tree_hashes(workdir) == before


# ------------------------------------------------------------------------- lock


def test_a_second_train_on_a_locked_workdir_exits_2_and_ctrl_c_is_one_line_exit_130(
    run_copy, shapes_dir, capsys
):
    """A second train on the directory of a running one is refused, naming its PID, and
    the first goes on; Ctrl-C then stops the first with one line and exit 130, and the
    rerun resumes. (A holder killed by SIGKILL: the next test, and a real run in the
    kill -9 resume test in tests/training/test_trainer.py.)"""
    workdir = run_copy()
    args = train_args(workdir, shapes_dir, "train.epochs=40")
    process = spawn(*args)
    lock = workdir / run_dir.LOCK
    wait_for(lambda: lock.exists() and lock.read_text().strip() == str(process.pid), process)
    # The second train in this process (a real process's exit 2 and stderr: the
    # end-to-end and signal tests; the lock is the other process's either way).
    code, _, err = cli(capsys, *args)
    assert_clean_error(code, err, workdir, f"PID {process.pid}")
    assert lock.read_text().strip() == str(process.pid)  # the refused run left the lock alone
    assert process.poll() is None  # the first run goes on
    wait_for(lambda: _state(workdir)["epoch"] >= 3, process)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=300) == 130
    err = process.stderr.read()
    saved = _state(workdir)["epoch"]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    ours = [line for line in err.splitlines() if line.startswith("bnkeras ")]
    assert ours == [
        f"bnkeras train: interrupted; rerun the same command to resume from epoch {saved + 1}"
    ], err
    assert not lock.exists()
    assert not list(workdir.rglob(".*.tmp-*"))
    before = tree_hashes(workdir / "checkpoints")
    code, out, err = cli(capsys, *train_args(workdir, shapes_dir, f"train.epochs={saved + 1}"))
    assert code == 0, err
    assert f"resuming from epoch {saved}" in out
    assert _epochs(workdir) == list(range(1, saved + 2))  # one writer: every epoch once
    assert before != tree_hashes(workdir / "checkpoints")


def test_the_lock_file_of_a_killed_holder_does_not_block(tmp_path):
    # A holder as `run_dir.lock` leaves it: flock on the file, its PID inside; then kill -9.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            "handle = open(sys.argv[1], 'a+')\n"
            "fcntl.flock(handle, fcntl.LOCK_EX)\n"
            "handle.write(f'{os.getpid()}\\n'); handle.flush()\n"
            "os.kill(os.getpid(), 9)\n",
            str(tmp_path / run_dir.LOCK),
        ],
    )
    assert holder.wait() == -signal.SIGKILL
    assert_stale_lock_does_not_block(tmp_path, holder.pid)


# ------------------------------------------------------------- refused runs


@pytest.mark.parametrize(
    "bad,names",
    [
        (["norm.name=ghost", "norm.virtual_batch_size=12"], ["norm.virtual_batch_size=12"]),
        (["data.train_split=nosuch"], ["nosuch"]),
        (["norm.momentum=2.0"], ["momentum", "2.0"]),  # the model cannot be built
    ],
)
def test_a_refused_run_leaves_nothing_that_blocks_the_corrected_command(
    shapes_dir, tmp_path, capsys, bad, names
):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine")
    before = tree_hashes(workdir)
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, *bad, "train.epochs=1"))
    assert_clean_error(code, err, *names)
    assert tree_hashes(workdir) == before
    if bad[0].startswith("norm.name=ghost"):  # the corrected command runs
        fixed = ["norm.name=ghost", "norm.virtual_batch_size=8", "train.epochs=1"]
        code, _, err = cli(capsys, *train_args(workdir, shapes_dir, *fixed))
        assert code == 0, err
        assert (workdir / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------ NaN and resume


def test_nan_stops_within_the_batch_and_a_lower_lr_resumes(run_copy, shapes_dir, capsys):
    workdir = run_copy()
    kept = tree_hashes(workdir / "checkpoints")
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3", "train.lr=1e30"))
    assert_clean_error(code, err, "NaN in epoch 3", "epoch 2", "lower --lr")
    batch = int(err.split("(batch ")[1].split(")")[0])
    assert batch < 256 // 32 - 1  # stopped before the end of the epoch
    kept.pop("state.json")  # which now records the lr tried
    assert {k: v for k, v in tree_hashes(workdir / "checkpoints").items() if k in kept} == kept
    assert _state(workdir)["epoch"] == 2 and _epochs(workdir) == [1, 2]

    code, out, err = cli(
        capsys, *train_args(workdir, shapes_dir, "train.epochs=3", "train.lr=0.05")
    )
    assert code == 0, err
    assert "changed optimizer settings: train.lr: 1e+30 -> 0.05" in out
    assert _epochs(workdir) == [1, 2, 3]
    config_text = (workdir / "config.yaml").read_text()
    assert yaml.safe_load(config_text)["train"]["lr"] == 0.05
    assert "# resumed at epoch 2 with train.lr: 1e+30 -> 0.05" in config_text
    assert _state(workdir)["resumed"][-1] == {"epoch": 2, "changes": {"train.lr": [1e30, 0.05]}}


def test_a_changed_model_is_refused_even_without_config_yaml(run_copy, shapes_dir, capsys):
    workdir = run_copy()
    (workdir / "config.yaml").unlink()
    (workdir / ".model.keras.tmp-99999.keras").write_bytes(b"half of a model")  # a killed write
    before = tree_hashes(workdir)
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, "model.width=8"))
    assert_clean_error(code, err, workdir, "model.width: 4 -> 8", "--overwrite")
    assert tree_hashes(workdir) == before  # config.yaml not rewritten
    code, out, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert code == 0, err
    assert yaml.safe_load((workdir / "config.yaml").read_text())["model"]["width"] == 4
    assert _epochs(workdir) == [1, 2, 3]
    assert not list(workdir.glob(".*.tmp-*"))


# --------------------------------------------------------------- corrupt files


def _only_the_last_checkpoint(workdir):
    state = _state(workdir)
    for path in (workdir / "checkpoints").glob("epoch_*.keras"):
        if path.name != state["last"]:
            path.unlink()
    state.update(best=state["last"], best_epoch=state["epoch"])
    (workdir / "checkpoints" / "state.json").write_text(json.dumps(state))
    return workdir / "checkpoints" / state["last"]


_HEADER = ",".join(LOG_FIELDS)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage,names",
    [
        (lambda w: _only_the_last_checkpoint(w).write_bytes(b""), ["epoch_0002.keras", "damaged"]),
        (lambda w: _truncate(_only_the_last_checkpoint(w)), ["epoch_0002.keras", "damaged"]),
        (lambda w: _only_the_last_checkpoint(w).unlink(), ["epoch_0002.keras", "missing"]),
        (
            lambda w: (w / "log.csv").write_text(f"{_HEADER}\n1,0.1,banana,0,0,0,1\n"),
            ["log.csv", "line 2"],
        ),
        (lambda w: (w / "log.csv").write_bytes(b"\x00\xff garbage"), ["log.csv", "line 1"]),
    ],
    ids=[
        "empty-checkpoint",
        "truncated-checkpoint",
        "deleted-checkpoint",
        "garbage-log",
        "binary-log",
    ],
)
def test_damaged_run_files_are_one_line_errors(run_copy, shapes_dir, capsys, damage, names):
    workdir = run_copy()
    damage(workdir)
    before = tree_hashes(workdir)
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert_clean_error(code, err, *names)
    assert tree_hashes(workdir) == before


@pytest.mark.filterwarnings(_SHOW_RECOVERY)
def test_a_damaged_last_checkpoint_resumes_from_the_best_one(
    run_copy, finished_run, shapes_dir, capsys
):
    workdir = run_copy()
    state = _state(workdir)
    shutil.copy(finished_run.parent / "epoch_0001.keras", workdir / "checkpoints")
    state.update(best="epoch_0001.keras", best_epoch=1, best_value=1.0)
    (workdir / "checkpoints" / "state.json").write_text(json.dumps(state))
    _truncate(workdir / "checkpoints" / "epoch_0002.keras")
    code, out, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "epoch_0002.keras is damaged" in warning
    assert "resuming from the best checkpoint epoch_0001.keras (epoch 1)" in warning
    assert "resuming from epoch 1 (checkpoint epoch_0001.keras)" in out
    assert _epochs(workdir) == [1, 2, 3] and _state(workdir)["epoch"] == 3


@pytest.mark.filterwarnings(_SHOW_RECOVERY)
def test_a_damaged_state_json_resumes_from_the_newest_intact_checkpoint(
    run_copy, shapes_dir, capsys
):
    workdir = run_copy()
    (workdir / "checkpoints" / "state.json").write_text("")
    code, out, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert code == 0, err
    (warning,) = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert "state.json is empty" in warning and "epoch_0002.keras (epoch 2)" in warning
    assert _epochs(workdir) == [1, 2, 3] and _state(workdir)["epoch"] == 3


# ----------------------------------------------------------- full / read-only


def test_disk_full_while_checkpointing(finished_run, shapes_dir, tmpfs, capsys):
    workdir = tmpfs("4m") / "run"
    shutil.copytree(finished_run, workdir)
    checkpoint = (workdir / "checkpoints" / "epoch_0002.keras").stat().st_size
    filler = fill(workdir.parent, checkpoint // 2)
    kept = tree_hashes(workdir / "checkpoints")
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir, "train.epochs=3"))
    assert_clean_error(code, err, "epoch_0003.keras", "No space left", "resume from epoch 3")
    assert tree_hashes(workdir / "checkpoints") == kept
    assert not list(workdir.rglob(".*.tmp-*"))
    assert filler.stat().st_size and not (workdir / run_dir.LOCK).exists()


def test_disk_full_writing_the_final_model(finished_run, shapes_dir, tmpfs, capsys):
    workdir = tmpfs("4m") / "run"
    shutil.copytree(finished_run, workdir)
    (workdir / "model.keras").unlink()  # killed after the last checkpoint
    filler = fill(workdir.parent, 16 * 1024)
    before = tree_hashes(workdir)
    code, _, err = cli(capsys, *train_args(workdir, shapes_dir))
    assert_clean_error(code, err, "model.keras", "No space left")
    assert tree_hashes(workdir) == before and filler.exists()
    assert not list(workdir.rglob(".*.tmp-*"))


def test_read_only_work_directory(finished_run, shapes_dir, tmpfs, capsys):
    mount = tmpfs("4m")
    shutil.copytree(finished_run, mount / "run")
    before = tree_hashes(mount / "run")
    remount_read_only(mount)
    code, _, err = cli(capsys, *train_args(mount / "run", shapes_dir, "train.epochs=3"))
    assert_clean_error(code, err, mount / "run", "Read-only file system")
    assert tree_hashes(mount / "run") == before


# ------------------------------------------------------------------------ EMA


def test_ema_is_validated_saved_and_a_finished_run_is_not_rewritten(shapes_dir, tmp_path, capsys):
    workdir = tmp_path / "ema"
    args = train_args(workdir, shapes_dir, "train.ema=0.9")
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    metrics = json.loads((workdir / "metrics.json").read_text())
    last = read_log(workdir)[-1]
    # Validation ran on the EMA weights, the same weights as the final evaluation.
    assert last["val_loss"] == pytest.approx(metrics["loss"], rel=1e-5)
    assert last["val_accuracy"] == pytest.approx(metrics["top1"], rel=1e-6)
    final = keras.saving.load_model(workdir / "model.keras").get_weights()
    files = tree_hashes(workdir)
    code, out, err = cli(capsys, *args)
    assert code == 0 and "nothing to train" in out, err
    assert tree_hashes(workdir) == files
    (workdir / "model.keras").unlink()  # killed after the last checkpoint: rebuilt from it
    code, _, err = cli(capsys, *args)
    assert code == 0, err
    for a, b in zip(
        final, keras.saving.load_model(workdir / "model.keras").get_weights(), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------- global state


def test_a_run_restores_the_dtype_policy_and_random_state(shapes_dir, tmp_path):
    random.seed(7)
    np.random.seed(7)
    expected = (random.random(), np.random.random())
    random.seed(7)
    np.random.seed(7)
    config = tiny(shapes_dir, "train.mixed_precision=bfloat16", "data.train_split=nosuch")
    with pytest.raises(ValueError, match="nosuch"):
        train_and_evaluate(config, tmp_path / "run", **QUIET)
    assert keras.config.dtype_policy().name == "float32"
    assert (random.random(), np.random.random()) == expected


def test_clear_never_follows_a_listed_path_out_of_the_runs_folders(run_copy, tmp_path):
    """The list is a file a user can edit: a path out of checkpoints/ or tensorboard/
    (or a link in them) is never deleted."""
    workdir = run_copy()
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    (workdir / "notes.txt").write_text("mine")
    (workdir / "checkpoints" / "link.keras").symlink_to(outside)
    listed = manifest.written(workdir)
    manifest.record(workdir, "../outside.txt", "checkpoints/../notes.txt", "notes.txt")
    assert run_dir.clear(workdir) == ["checkpoints/link.keras"]
    assert outside.read_text() == "mine" and (workdir / "notes.txt").read_text() == "mine"
    assert not any((workdir / f).exists() for f in listed)
