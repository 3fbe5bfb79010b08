"""`bnkeras export --out`: what may be written or replaced, bad options, what is said on screen."""

import json
import os

import keras
import pytest

from bnkeras.cli import main
from bnkeras.export import outdir
from tests.conftest import tree_hashes
from tests.export.test_export_cli import _conv_bn_model


@pytest.fixture
def run_dir(tmp_path, rng):
    """A training work directory with a small conv+BN model and the run's other files."""
    run = tmp_path / "runs" / "demo"
    (run / "checkpoints").mkdir(parents=True)
    model, _ = _conv_bn_model(tmp_path, rng)
    model.save(run / "model.keras")
    (run / "checkpoints" / "epoch_0001.weights.h5").write_bytes(b"checkpoint bytes")
    (run / "log.csv").write_text("epoch,loss\n0,1.0\n")
    sibling = tmp_path / "runs" / "other"
    sibling.mkdir()
    (sibling / "log.csv").write_text("epoch,loss\n0,2.0\n")
    return run


def _export(*argv):
    return main(["export", *map(str, argv), "--formats", "keras"])


def _refused(capsys, *argv):
    assert _export(*argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "source, out, expected",
    [
        (lambda run: run, lambda run: run, "is the export's source"),
        (lambda run: run, lambda run: run.parent, "contains the export's source"),
        (lambda run: run, lambda run: run / ".." / "demo", "is the export's source"),
        (lambda run: run, lambda run: run / "model.keras", "is not a directory"),
        (lambda run: run, lambda run: run / "checkpoints", "not a bnkeras export"),
        (lambda run: run / "model.keras", lambda run: run / "model.keras", "is the export's"),
        (lambda run: run / "model.keras", lambda run: run, "contains the export's source"),
    ],
    ids=["run", "parent", "dotdot", "run_model", "run_checkpoints", "model_file", "model_dir"],
)
def test_out_that_is_or_contains_the_source_is_refused(run_dir, capsys, source, out, expected):
    before = tree_hashes(run_dir.parent)
    message = _refused(capsys, source(run_dir), "--out", out(run_dir), "--overwrite")
    assert f"--out {out(run_dir)}" in message and expected in message
    assert tree_hashes(run_dir.parent) == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["demo", "other"]


def test_out_through_a_symlink_or_relative_path_is_refused(run_dir, capsys, monkeypatch):
    before = tree_hashes(run_dir.parent)
    link = run_dir.parent.parent / "link"
    link.symlink_to(run_dir, target_is_directory=True)
    assert "the export's source" in _refused(capsys, run_dir, "--out", link, "--overwrite")
    monkeypatch.chdir(run_dir)
    assert "the export's source" in _refused(capsys, "model.keras", "--out", ".", "--overwrite")
    assert "the export's source" in _refused(capsys, ".", "--out", "..", "--overwrite")
    assert tree_hashes(run_dir.parent) == before


def test_out_inside_the_run_is_written_and_replaced(run_dir, capsys):
    before = tree_hashes(run_dir)
    out = run_dir / "export"
    assert _export(run_dir, "--out", out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report[outdir.EXPORT_FIELD] == outdir.EXPORT_VERSION
    assert sorted(p.name for p in out.iterdir()) == [
        "export.log",
        "model_folded.keras",
        "report.json",
    ]
    assert "already exists" in _refused(capsys, run_dir, "--out", out)
    assert _export(run_dir, "--out", out, "--overwrite") == 0
    assert outdir.is_export(out)
    after = tree_hashes(run_dir)
    assert {k: v for k, v in after.items() if not k.startswith("export/")} == before
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".export.")]


def test_overwrite_replaces_only_an_export_or_an_empty_directory(run_dir, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert "already exists" in _refused(capsys, run_dir, "--out", out)
    message = _refused(capsys, run_dir, "--out", out, "--overwrite")
    assert "holds files that are not a bnkeras export" in message
    assert (out / "precious.txt").read_text() == "keep me"
    # a previous export with a user's file added is not only an export any more
    assert _export(run_dir, "--out", tmp_path / "export") == 0
    (tmp_path / "export" / "notes.txt").write_text("mine")
    assert "not a bnkeras export" in _refused(
        capsys, run_dir, "--out", tmp_path / "export", "--overwrite"
    )
    assert (tmp_path / "export" / "notes.txt").read_text() == "mine"
    # a report.json without the export's field is not ours either
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "report.json").write_text('{"verification": {}}')
    assert "not a bnkeras export" in _refused(
        capsys, run_dir, "--out", tmp_path / "foreign", "--overwrite"
    )
    (tmp_path / "file").write_text("a file")
    assert "is not a directory" in _refused(
        capsys, run_dir, "--out", tmp_path / "file", "--overwrite"
    )
    (tmp_path / "empty").mkdir()
    assert _export(run_dir, "--out", tmp_path / "empty", "--overwrite") == 0
    assert outdir.is_export(tmp_path / "empty")


@pytest.mark.parametrize("listed", [True, False], ids=["tree", "report-before-the-tree"])
def test_overwrite_refuses_a_user_file_at_any_depth_of_a_previous_export(
    run_dir, tmp_path, capsys, listed
):
    """A file a user added inside a previous export's folders (saved_model/assets/vocab.txt,
    deeper ones) makes it not only an export: --overwrite refuses and names it, for a
    report that lists every file and for one from before that list."""
    out = tmp_path / "export"
    argv = [run_dir, "--out", out, "--formats", "keras,saved_model"]
    assert main(["export", *map(str, argv)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "saved_model/saved_model.pb" in report["tree"] and "report.json" in report["tree"]
    if not listed:
        del report["tree"]
        (out / "report.json").write_text(json.dumps(report))
    assert outdir.is_export(out)  # the export alone is replaceable
    for added in ["saved_model/assets/vocab.txt", "saved_model/variables/mine/notes.md"]:
        (out / added).parent.mkdir(parents=True, exist_ok=True)
        (out / added).write_text("the user's")
        before = tree_hashes(out)
        assert main(["export", *map(str, argv), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert "not a bnkeras export" in err and added in err, err
        assert tree_hashes(out) == before
        (out / added).unlink()
    assert main(["export", *map(str, argv), "--overwrite"]) == 0


@pytest.mark.parametrize(
    "option, value, expected",
    [
        ("--rtol", "-1", "--rtol must be a finite number >= 0 (e.g. 1e-4). Received: rtol=-1.0"),
        ("--atol", "-1", "--atol must be a finite number >= 0 (e.g. 1e-4). Received: atol=-1.0"),
        ("--rtol", "nan", "Received: rtol=nan"),
        (
            "--batch-size",
            "0",
            "--batch-size must be an integer in [1, 4096]. Received: batch_size=0",
        ),
        ("--formats", "keras,tflite", "Unknown export format tflite"),
        ("--formats", ",", "Unknown export format (none)"),
        ("--opset", "99", "Unsupported ONNX opset 99"),
    ],
)
def test_bad_options_write_nothing(run_dir, tmp_path, capsys, option, value, expected):
    out = tmp_path / "new" / "out"
    formats = [] if option == "--formats" else ["--formats", "keras,onnx"]
    assert main(["export", str(run_dir), "--out", str(out), option, value, *formats]) == 2
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_stale_leftovers_are_cleaned_only_when_ours_and_dead(run_dir, tmp_path):
    out = tmp_path / "out"
    dead = 2**22 + 12345  # above pid_max's default: no such process
    ours = tmp_path / f".out.partial-{dead}"
    ours.mkdir()
    (ours / outdir.MARKER).write_text("{}")
    (ours / "big.bin").write_bytes(b"0" * 1000)
    unmarked = tmp_path / f".out.partial-{dead + 1}"  # same name pattern, no marker: not ours
    unmarked.mkdir()
    (unmarked / "data.txt").write_text("user data")
    alive = tmp_path / f".out.partial-{os.getppid()}"  # a live process's partial export
    alive.mkdir()
    (alive / outdir.MARKER).write_text("{}")
    other = tmp_path / f".other.partial-{dead}"  # another --out's
    other.mkdir()
    (other / outdir.MARKER).write_text("{}")
    assert _export(run_dir, "--out", out) == 0
    assert not ours.exists()
    assert (unmarked / "data.txt").read_text() == "user data"
    assert alive.exists() and other.exists()


def test_screen_says_which_inputs_and_nothing_to_fold(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)]).save(run / "model.keras")
    assert _export(run, "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert "nothing to fold: the model has no BN layers" in printed
    assert (
        "verification inputs: random normal inputs, batch 8, because the run's data could not "
        "be read (ConfigError: " in printed
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["inputs"].startswith("random inputs (the run's data could not be read")
    assert report["verification"]["passed"] and report["peak_rss_mb"] > 100
