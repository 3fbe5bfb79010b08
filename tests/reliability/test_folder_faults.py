"""The user's own image folders: split folders, renamed and empty class folders, a work
directory inside the data, and every file format: the right classes and labels, or one
clear error naming the folder and the fix; never a model with wrong classes."""

import io
import json
import logging
import shutil
import warnings

import numpy as np
import pytest
from PIL import Image

from bnkeras.training import workdir as run_dir
from bnkeras.training.config import DEFAULTS
from bnkeras.training.data import DataError, load_data
from tests.reliability.conftest import assert_clean_error, cli, tree_hashes

DARK, BRIGHT = 30, 220  # the pixel values of the two classes of the label tests
# 8x8 JPEG XL images of those values (lossless), as no encoder is installed:
# tf.io.decode_image reads them.
JPEG_XL = {
    DARK: bytes.fromhex("ff0a4140240804010038004b188b158095ea7f000ca65a4d38"),
    BRIGHT: bytes.fromhex("ff0a414024080401003c004b188b15805dd4ff001892ae9ae002"),
}
TINY_FOLDER = [
    "model.name=resnet8",
    "model.width=4",
    "data.image_size=16",
    "data.shuffle_buffer=64",
    "train.batch_size=4",
    "train.epochs=1",
    "train.warmup_epochs=0",
]


def _config(root, **overrides):
    return {
        **DEFAULTS["data"],
        "dataset": "folder",
        "data_dir": str(root),
        "image_size": 16,
        "shuffle_buffer": 64,
        **overrides,
    }


def _image_bytes(value, fmt, size=12):
    if fmt == "JXL":
        return JPEG_XL[value]
    pixels = np.full((size, size + 1, 3), value, np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def _images(folder, count, value=128, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(start, start + count):
        (folder / f"img{index:03d}.png").write_bytes(_image_bytes(value, "PNG"))


def _train_args(workdir, data_dir, *overrides):
    sets = [f"--set={s}" for s in [*TINY_FOLDER, *overrides]]
    return ["train", "--workdir", workdir, "--dataset", "folder", "--data-dir", data_dir, *sets]


def _labels_match_brightness(dataset):
    """Every (image, label) of `dataset`: label 1 exactly for the bright images."""
    for images, labels in dataset:
        bright = np.mean(images.numpy(), axis=(1, 2, 3)) > 0
        np.testing.assert_array_equal(np.argmax(labels.numpy(), -1), bright.astype(int))


# ----------------------------------------------------------- 4: split folders


@pytest.mark.parametrize(
    "train,evaluated,unused",
    [
        ("train", "test", ()),
        ("train", "val", ()),
        ("train", "validation", ("test",)),
        ("train", "valid", ("TEST",)),
        ("Train", "Val", ()),
        ("TRAIN", "TEST", ()),
    ],
)
def test_split_folders_are_splits_not_classes(tmp_path, caplog, train, evaluated, unused):
    root = tmp_path / "data"
    for split, count in ((train, 6), (evaluated, 3), *((u, 2) for u in unused)):
        _images(root / split / "cat", count, DARK)
        _images(root / split / "dog", count, BRIGHT)
    with caplog.at_level(logging.INFO, logger="bnkeras"):
        data = load_data(_config(root), 4)
    _labels_match_brightness(data.eval)
    _labels_match_brightness(data.train)
    assert data.classes == ("cat", "dog")
    assert (data.train_examples, data.eval_examples) == (12, 6)
    assert f"evaluating on {evaluated}/" in caplog.text
    for name in unused:
        assert f"{name}/ not used" in caplog.text


def test_train_test_layout_trains_the_classes_and_says_which_split_evaluates(tmp_path, capsys):
    """The issue's case: data/train/{cat,dog} + data/test/{cat,dog} gave a model of the
    classes `test` and `train`."""
    root, workdir = tmp_path / "data", tmp_path / "run"
    for split, count in (("train", 8), ("test", 4)):
        _images(root / split / "cat", count, DARK)
        _images(root / split / "dog", count, BRIGHT)
    code, out, err = cli(capsys, *_train_args(workdir, root))
    assert code == 0, err
    assert f"image folder {root}: training on train/, evaluating on test/" in out
    stored = json.loads((workdir / run_dir.CLASSES).read_text())
    assert (stored["classes"], stored["count"]) == (["cat", "dog"], 2)
    code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0 and "evaluating on test/" in out and "(8 images)" in out, err


@pytest.mark.parametrize(
    "layout,names",
    [
        (("train/cat", "train/dog", "test/cat", "test/dog", "extra/cat"), ("train/", "extra")),
        (("Val/cat", "Val/dog", "cat", "dog"), ("Val/", "cat, dog")),
        (("train/cat", "train/dog", "val/cat", "validation/cat"), ("val, validation",)),
        (("test/cat", "test/dog"), ("test/", "no train/")),
        (("cat/train", "cat/test", "dog/train", "dog/test"), ("cat", "test/, train/")),
        (("train/cat/val", "train/dog", "val/cat", "val/dog"), ("train/cat", "val/")),
        (("train/test", "train/dog", "test/test", "test/dog"), ("train/test", "named like")),
    ],
    ids=[
        "split-and-other",
        "capitalised-split-and-classes",
        "two-eval-splits",
        "no-train",
        "splits-inside-classes",
        "split-deep-in-a-class",
        "class-named-like-a-split",
    ],
)
def test_split_looking_folders_never_become_classes(tmp_path, capsys, layout, names):
    root = tmp_path / "data"
    for folder in layout:
        _images(root / folder, 3)
    before = tree_hashes(root)
    code, out, err = cli(capsys, *_train_args(tmp_path / "run", root))
    assert_clean_error(code, err, root, *names)
    assert tree_hashes(root) == before and not (tmp_path / "run" / "config.yaml").exists()


# ------------------------------------------------ 5: classes stored in the run


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """(data folder, work directory) of a finished tiny run on the image folder
    {a: dark, b: bright} (a held-out part of each class); tests take copies."""
    from bnkeras.cli import main

    base = tmp_path_factory.mktemp("folder_run")
    root, workdir = base / "data", base / "run"
    _images(root / "a", 24, DARK)
    _images(root / "b", 24, BRIGHT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny epochs
        assert main([str(a) for a in _train_args(workdir, root)]) == 0
    return root, workdir


@pytest.fixture
def folder_run_copy(folder_run, tmp_path):
    root, workdir = (tmp_path / p.name for p in folder_run)
    for source, target in zip(folder_run, (root, workdir), strict=True):
        shutil.copytree(source, target)
    config = workdir / "config.yaml"  # the run's data folder is now the copy
    config.write_text(config.read_text().replace(str(folder_run[0]), str(root)))
    return root, workdir


def test_the_run_stores_its_classes_as_a_file_of_the_run(folder_run):
    _, workdir = folder_run
    stored = json.loads((workdir / run_dir.CLASSES).read_text())
    assert stored["classes"] == ["a", "b"] and stored["count"] == 2
    assert stored["holdout"] == "sha1-of-path-in-class"
    assert run_dir.CLASSES in run_dir.RUN_FILES  # --overwrite deletes it, and only it
    assert run_dir.read_classes(workdir) == (["a", "b"], "sha1-of-path-in-class")


@pytest.mark.parametrize(
    "rename",
    [{"a": "z_a"}, {"a": "c"}, {"a": "b_", "b": "a"}],
    ids=["renamed-last", "renamed", "swapped"],
)
def test_renamed_class_folders_are_refused_by_evaluate_export_and_resume(
    folder_run_copy, capsys, rename
):
    root, workdir = folder_run_copy
    for old, new in rename.items():
        (root / old).rename(root / f".{new}")
    for new in rename.values():
        (root / f".{new}").rename(root / new)
    before = tree_hashes(workdir)
    code, out, err = cli(capsys, "evaluate", workdir)
    assert_clean_error(
        code, err, "[a, b]", f"[{', '.join(sorted(p.name for p in root.iterdir()))}]"
    )
    assert "trained on" in err and "classes.json" in err
    code, _, err = cli(capsys, "export", workdir, "--out", workdir.parent / "export")
    assert_clean_error(code, err, "[a, b]", "trained on")
    assert not (workdir.parent / "export").exists()
    code, _, err = cli(capsys, *_train_args(workdir, root, "train.epochs=2"))
    assert_clean_error(code, err, "[a, b]", "trained on")
    assert tree_hashes(workdir) == before


def _held_out_values(root):
    """{(label, pixel value)} of the evaluation images of `root` (each image is one value)."""
    data = load_data(_config(root, holdout_fraction=0.25), 8, train=False)
    mean, std = (
        np.array(data_config) * 255
        for data_config in (DEFAULTS["data"]["mean"], DEFAULTS["data"]["std"])
    )
    found = set()
    for images, labels in data.eval:
        values = np.rint(images.numpy()[:, 0, 0, :] * std + mean)[:, 0].astype(int)
        found |= set(zip(np.argmax(labels.numpy(), -1).tolist(), values.tolist(), strict=True))
    return found


def test_the_held_out_split_survives_renamed_folders_and_added_files(tmp_path):
    """A folder without split folders: the same images stay held out (and so out of
    training) when a class folder is renamed and files are added."""
    root = tmp_path / "data"
    for label, name in enumerate("ab"):
        for value in range(100 * label, 100 * label + 40):
            _images(root / name, 1, value, start=value)
    before = _held_out_values(root)
    (root / "a").rename(root / "aa")  # renamed (its class still the first) ...
    for label, name in enumerate(("aa", "b")):  # ... and files added to both classes
        for value in range(100 * label + 40, 100 * label + 60):
            _images(root / name, 1, value, start=value)
    after = _held_out_values(root)
    assert 0 < len(before) < 80
    old = {(label, value) for label, value in after if value % 100 < 40}
    assert old == before


@pytest.mark.filterwarnings("always:.*no classes.json:UserWarning")
def test_a_run_made_before_classes_were_stored_still_evaluates_with_a_warning(
    folder_run_copy, capsys
):
    from bnkeras.training.data import HOLDOUT_BY_PATH

    root, workdir = folder_run_copy
    (workdir / run_dir.CLASSES).unlink()  # as an older bnkeras left the run
    code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0, err
    assert "no classes.json" in err and "older bnkeras" in err
    # ... evaluated on the images its own held-out rule (the path in the data folder) held out
    old = load_data(_config(root), 8, train=False, holdout=HOLDOUT_BY_PATH)
    assert f"({old.eval_examples} images)" in out


@pytest.mark.filterwarnings("always:.*no classes.json:UserWarning")
def test_an_older_run_resumes_with_its_own_held_out_split_and_then_stores_it(
    folder_run_copy, capsys
):
    from bnkeras.training.data import HOLDOUT_BY_PATH

    root, workdir = folder_run_copy
    (workdir / run_dir.CLASSES).unlink()  # as an older bnkeras left the run
    code, out, err = cli(capsys, *_train_args(workdir, root, "train.epochs=2"))
    assert code == 0 and "no classes.json" in err, err
    assert run_dir.read_classes(workdir) == (["a", "b"], HOLDOUT_BY_PATH)
    old = load_data(_config(root), 8, train=False, holdout=HOLDOUT_BY_PATH)
    code, out, err = cli(capsys, "evaluate", workdir)
    assert code == 0 and f"({old.eval_examples} images)" in out and not err, err


@pytest.mark.parametrize("damage", ["", "{", '{"classes": ["a"], "count": 2, "holdout": null}'])
def test_a_damaged_classes_json_is_one_line_naming_it(folder_run_copy, capsys, damage):
    root, workdir = folder_run_copy
    (workdir / run_dir.CLASSES).write_text(damage)
    before = tree_hashes(workdir)
    for argv in (
        ["evaluate", workdir],
        ["export", workdir, "--out", workdir.parent / "export"],
        _train_args(workdir, root, "train.epochs=2"),
    ):
        code, _, err = cli(capsys, *argv)
        assert_clean_error(code, err, workdir / run_dir.CLASSES, "damaged", "--overwrite")
    assert tree_hashes(workdir) == before and not (workdir.parent / "export").exists()


# --------------------------------------- 6: empty classes, a workdir in the data


@pytest.mark.parametrize(
    "layout,empty,why",
    [
        ({"a": 4, "b": 4, "c": 0}, "c", "is empty"),
        ({"train/a": 4, "train/b": 4, "train/c": 0, "val/a": 2, "val/b": 2}, "train/c", "is empty"),
        ({"train/a": 4, "train/b": 4, "val/a": 2, "val/b": 0}, "val/b", "is empty"),
        ({"a": 4, "b": 4, "c/sub/deeper": 0}, "c", "is empty"),
        ({"a": 4, "b": 4, "c": "notes.txt"}, "c", "holds no"),
        ({"a": 4, "b": 4, "c": "broken.jpg"}, "c", "holds no"),
    ],
    ids=["top", "in-train", "in-val", "only-folders", "only-text", "only-broken"],
)
def test_an_empty_class_folder_is_an_error_naming_it(tmp_path, capsys, layout, empty, why):
    root = tmp_path / "data"
    for folder, content in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        if isinstance(content, int):
            _images(root / folder, content)
        else:
            (root / folder / content).write_text("not an image")
    with pytest.raises(DataError, match=rf"class folder {root / empty} {why}"):
        load_data(_config(root), 2)
    code, _, err = cli(capsys, *_train_args(tmp_path / "run", root))
    assert_clean_error(code, err, root / empty, why)


@pytest.mark.parametrize("where", ["run1", "a/run1", ".", "b/../run1"])
def test_a_workdir_inside_the_image_folder_is_refused(tmp_path, capsys, where):
    root = tmp_path / "data"
    _images(root / "a", 6, DARK)
    _images(root / "b", 6, BRIGHT)
    before = tree_hashes(root)
    workdir = root / where
    code, _, err = cli(capsys, *_train_args(workdir, root))
    assert_clean_error(code, err, workdir, "inside the image folder", "outside")
    assert tree_hashes(root) == before and sorted(p.name for p in root.iterdir()) == ["a", "b"]


@pytest.mark.parametrize("where", ["run", "a/run", "b/photos/run"])
def test_a_run_inside_the_image_folder_is_not_read_as_images(folder_run_copy, capsys, where):
    root, workdir = folder_run_copy
    shutil.move(workdir, root / where)
    code, _, err = cli(capsys, "evaluate", root / where, "--data-dir", root)
    assert_clean_error(code, err, root / where, "work directory", "move it out")


# -------------------------------------------------- 7: decodability and formats


def _truncated_jpeg():
    noise = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG")
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


# Every format tf.io.decode_image reads, by every extension it goes by.
DECODED = {
    "x.jpg": ("JPEG", None),
    "x.jpeg": ("JPEG", None),
    "x.JPG": ("JPEG", None),
    "x.jpe": ("JPEG", None),
    "x.jfif": ("JPEG", None),
    "x.png": ("PNG", None),
    "x.gif": ("GIF", None),
    "x.bmp": ("BMP", None),
    "x.webp": ("WEBP", None),
    "x.jxl": ("JXL", None),
}
# What it cannot decode: skipped, counted and named; never a stop in the first batch.
SKIPPED = {
    "tiff-named.png": ("TIFF", None),
    "cut.jpg": (None, _truncated_jpeg()),
    "empty.jpg": (None, b""),
    "photo.tif": ("TIFF", None),
    "photo.tiff": ("TIFF", None),
}


@pytest.mark.filterwarnings("always:Skipped:UserWarning")
def test_every_format_tensorflow_decodes_is_used_and_the_others_are_skipped_and_counted(
    tmp_path, capsys
):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for name, value in (("a", DARK), ("b", BRIGHT)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for file, (fmt, raw) in {**DECODED, **SKIPPED}.items():
                (folder / file).write_bytes(raw if raw is not None else _image_bytes(value, fmt))
            (folder / "notes.txt").write_text("not an image, not counted")
    with pytest.warns(UserWarning) as caught:
        data = load_data(_config(root), 4)
    expected = (len(DECODED) * 2, len(DECODED) * 2, len(SKIPPED) * 4)
    assert (data.train_examples, data.eval_examples, data.skipped_files) == expected
    messages = [str(w.message) for w in caught if "Skipped" in str(w.message)]
    assert len(messages) == 2  # one line for each split
    assert messages[1].startswith(f"Skipped {len(SKIPPED) * 2} training image file(s) in {root}")
    assert "6 that TensorFlow cannot decode" in messages[1]
    assert "4 in formats TensorFlow does not read (.tif, .tiff;" in messages[1]
    assert "convert them to PNG or JPEG" in messages[1]
    for batch in data.train:  # the whole epoch decodes (no InvalidArgumentError)
        assert batch[0].shape[0] == 4
    _labels_match_brightness(data.eval.unbatch().batch(64))
    # The command trains on them and says what it skipped, once per split, in one line each.
    code, out, err = cli(capsys, *_train_args(tmp_path / "run", root))
    assert code == 0, err
    skipped = [line for line in err.splitlines() if "Skipped" in line]
    assert len(skipped) == 2 and all(line.startswith("warning: Skipped") for line in skipped)
    assert "tiff-named.png" in skipped[1] or "cut.jpg" in skipped[1]


def test_export_verifies_on_the_runs_data_and_records_its_classes(folder_run, tmp_path, capsys):
    _, workdir = folder_run
    out = tmp_path / "export"
    code, printed, err = cli(capsys, "export", workdir, "--out", out, "--formats", "keras")
    assert code == 0, err
    assert "from the run's evaluation data" in printed
    assert json.loads((out / "report.json").read_text())["classes"] == ["a", "b"]
