"""Damaged data: one clear error naming the file and the fix, never a traceback."""

import shutil
import struct

import numpy as np
import pytest

from bnkeras.cli import main
from bnkeras.training.config import DEFAULTS
from bnkeras.training.data import DataError, load_data, read_errors
from tests.conftest import tree_hashes
from tests.training.conftest import shapes_dir  # noqa: F401  (session fixture)


def test_image_folder_with_only_undecodable_images_is_one_line_exit_2(tmp_path, capsys):
    images = tmp_path / "images"
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            (images / split / name).mkdir(parents=True)
            for index in range(3):
                (images / split / name / f"{index}.jpg").write_bytes(b"not a jpeg")
    before = tree_hashes(images)
    argv = ["train", "--workdir", str(tmp_path / "run"), "--dataset", "folder"]
    code = main([*argv, "--data-dir", str(images)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"bnkeras train: error: None of the 6 evaluation images in {images} can be decoded "
        f"(e.g. {images}/val/cat/0.jpg, {images}/val/cat/1.jpg, {images}/val/cat/2.jpg): "
        "check the files (JPEG, PNG, GIF, BMP, WebP or JPEG XL)."
    ]
    assert tree_hashes(images) == before


def _record_end(path, count):
    """The byte offset just after the first `count` records of a TFRecord file."""
    offset = 0
    with open(path, "rb") as handle:
        for _ in range(count):
            handle.seek(offset)
            (length,) = struct.unpack("<Q", handle.read(8))
            offset += 8 + 4 + length + 4
    return offset


@pytest.mark.parametrize(
    "cut,reported",
    [(lambda end: end + 20, r"truncated record at \d+"), (lambda end: end, r"expected to contain")],
    ids=["mid-record", "at-a-record-boundary"],
)
def test_truncated_tfds_record_mid_epoch_names_the_file(shapes_dir, tmp_path, cut, reported):  # noqa: F811
    data_dir = tmp_path / "tfds"
    shutil.copytree(shapes_dir, data_dir)
    (record,) = (data_dir / "bnkeras_shapes" / "1.0.0").glob("*-train.tfrecord-*")
    with open(record, "r+b") as handle:
        handle.truncate(cut(_record_end(record, 100)))
    config = {
        **DEFAULTS["data"],
        "data_dir": str(data_dir),
        "image_size": 16,
        "shuffle_buffer": 16,
        "cache": False,
        "eval_split": "test[:16]",
    }
    data = load_data(config, 64)
    batches = iter(data.train)
    first = next(batches)[0].numpy()  # the epoch starts fine
    assert np.isfinite(first).all()
    with pytest.raises(DataError) as caught, read_errors(data):
        for _ in batches:
            pass
    message = str(caught.value)
    assert "\n" not in message
    assert f"the file {record} is truncated or corrupt" in message
    assert pytest.importorskip("re").search(reported, message)
    assert f"Delete {record.parent} and prepare the dataset again" in message
