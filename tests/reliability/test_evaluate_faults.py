"""`bnkeras evaluate` (and export's reading of a run) under damaged files and bad disks."""

import json
import shutil

import keras

from bnkeras.training import workdir as run_dir
from tests.reliability.conftest import (
    assert_clean_error,
    cli,
    fill,
    remount_read_only,
    tree_hashes,
)


def test_a_truncated_model_keras_is_named_with_the_fix(run_copy, capsys):
    workdir = run_copy()
    data = (workdir / "model.keras").read_bytes()
    (workdir / "model.keras").write_bytes(data[: len(data) // 2])
    before = tree_hashes(workdir)
    code, _, err = cli(capsys, "evaluate", workdir)
    assert_clean_error(code, err, workdir / "model.keras", "damaged", "bnkeras train")
    code, _, err = cli(capsys, "export", workdir, "--out", workdir.parent / "export")
    assert_clean_error(code, err, workdir / "model.keras", "damaged")
    assert tree_hashes(workdir) == before and not (workdir.parent / "export").exists()


def test_a_run_being_trained_can_be_evaluated(run_copy, capsys):
    workdir = run_copy()
    with run_dir.lock(workdir):  # as a training process holds it
        code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0 and "(128 images)" in out, err


def test_json_into_a_missing_folder_is_created(run_copy, tmp_path, capsys):
    target = tmp_path / "reports" / "2024" / "eval.json"
    code, out, err = cli(capsys, "evaluate", run_copy(), "--json", target)
    assert code == 0, err
    assert json.loads(target.read_text())["examples"] == 128


def test_json_never_replaces_the_model_a_run_file_or_a_foreign_file(
    run_copy, shapes_dir, tmp_path, capsys
):
    """--json refuses the evaluated model (file or run), every file of a run (existing or
    not, at any depth), and any existing file that is not a metrics file of evaluate;
    nothing is changed. A metrics file it wrote is replaced."""
    workdir = run_copy()
    model_file = tmp_path / "mymodel.keras"
    shutil.copy(workdir / "model.keras", model_file)
    (tmp_path / "notes.json").write_text('{"my": "notes"}')
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "link.json").symlink_to(tmp_path / "notes.json")
    on_file = ["evaluate", model_file, "--dataset", "bnkeras_shapes", "--data-dir", shapes_dir]
    cases = [
        (on_file, model_file, "the model being evaluated"),
        (on_file, tmp_path / "link.json", "not a metrics file"),
        ([*on_file[:1], workdir], workdir / "model.keras", "model.keras of the training run"),
        ([*on_file[:1], workdir], workdir / "metrics.json", "metrics.json of the training run"),
        ([*on_file[:1], workdir], workdir / "checkpoints" / "state.json", "training run"),
        ([*on_file[:1], workdir], workdir / "checkpoints" / "new.json", "training run"),
        ([*on_file[:1], workdir], workdir / "tensorboard" / "x" / "m.json", "training run"),
        ([*on_file[:1], workdir], tmp_path / "notes.json", "not a metrics file"),
        ([*on_file[:1], workdir], tmp_path / "notes.txt", "not a metrics file"),
    ]
    before = tree_hashes(tmp_path)
    for argv, target, reason in cases:
        code, out, err = cli(capsys, *argv, "--json", target)
        assert_clean_error(code, err, target, reason)
        assert out == ""  # refused before evaluating
    assert tree_hashes(tmp_path) == before
    assert not (workdir / "tensorboard" / "x").exists()
    # Its own metrics file (and one of a bnkeras without the marker) is replaced.
    for existing in (
        {"bnkeras_evaluate": 1, "top1": 0.5},
        {k: 0 for k in ("loss", "top1", "top5", "examples")},
    ):
        (tmp_path / "eval.json").write_text(json.dumps(existing))
        code, _, err = cli(capsys, "evaluate", workdir, "--json", tmp_path / "eval.json")
        assert code == 0, err
        written = json.loads((tmp_path / "eval.json").read_text())
        assert written["bnkeras_evaluate"] == 1 and written["examples"] == 128


def test_json_on_a_full_disk(run_copy, tmpfs, capsys):
    mount = tmpfs("1m")
    filler = fill(mount, 0)
    code, _, err = cli(capsys, "evaluate", run_copy(), "--json", mount / "eval.json")
    assert_clean_error(code, err, mount / "eval.json", "No space left")
    assert sorted(p.name for p in mount.iterdir()) == ["filler.bin"]  # no temporary file left
    assert filler.stat().st_size > 0


def test_json_on_a_read_only_disk_fails_before_evaluating(run_copy, tmpfs, capsys):
    mount = tmpfs("1m")
    remount_read_only(mount)
    code, out, err = cli(capsys, "evaluate", run_copy(), "--json", mount / "eval.json")
    assert_clean_error(code, err, mount / "eval.json", "not writable")
    assert out == ""  # nothing was evaluated


def test_a_model_that_takes_any_image_size(shapes_dir, tmp_path, capsys):
    model = keras.Sequential(
        [
            keras.Input((None, None, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10),
        ]
    )
    path = tmp_path / "any_size.keras"
    model.save(path)
    args = ["evaluate", path, "--dataset", "bnkeras_shapes", "--data-dir", shapes_dir]
    code, _, err = cli(capsys, *args)
    assert_clean_error(code, err, path, "(None, None, 3)", "--image-size")
    code, out, err = cli(capsys, *args, "--image-size", "16")
    assert code == 0 and "(1000 images)" in out, err


def test_a_run_without_model_keras_is_read_from_its_last_checkpoint(run_copy, capsys):
    workdir = run_copy()
    (workdir / "model.keras").unlink()  # killed before the final model was written
    before = tree_hashes(workdir)
    code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0 and "(128 images)" in out, err
    assert tree_hashes(workdir) == before
