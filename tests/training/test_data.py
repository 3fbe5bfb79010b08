import time

import numpy as np
import pytest
from PIL import Image

from bnkeras.training import data as data_module
from bnkeras.training.config import DEFAULTS
from bnkeras.training.data import DataError, load_data
from bnkeras.training.shapes_dataset import CLASSES, generate


def _config(**overrides):
    return {**DEFAULTS["data"], "image_size": 16, "shuffle_buffer": 64, **overrides}


def _write_images(folder, count, rng, size=20):
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 255, (size, size + index % 3, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index}.{'png' if index % 2 else 'jpg'}")


def test_embedded_dataset_is_deterministic():
    first = next(generate("train"))[1]["image"]
    again = next(generate("train"))[1]["image"]
    np.testing.assert_array_equal(first, again)
    labels = [
        example["label"]
        for _, example in zip(range(30), (e for _, e in generate("test")), strict=False)
    ]
    assert set(labels) == set(range(len(CLASSES)))


def test_embedded_pipeline(shapes_dir):
    data = load_data(
        _config(data_dir=shapes_dir, train_split="train[:64]", eval_split="test[:40]"), 16
    )
    images, labels = next(iter(data.train))
    assert images.shape == (16, 16, 16, 3) and labels.shape == (16, 10)
    assert abs(float(np.mean(images))) < 1.5  # normalized
    assert data.steps_per_epoch == 4 and data.num_classes == 10
    assert sum(int(b[0].shape[0]) for b in data.eval) == 40  # evaluation keeps every image


def test_training_batches_depend_only_on_seed_and_epoch(shapes_dir):
    config = _config(data_dir=shapes_dir, train_split="train[:64]", eval_split="test[:16]")
    whole = [b[0].numpy() for b in load_data(config, 16, epochs=(0, 2)).train]
    resumed = [b[0].numpy() for b in load_data(config, 16, epochs=(1, 2)).train]
    assert len(whole) == 8 and len(resumed) == 4
    for a, b in zip(whole[4:], resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(whole[0], whole[4])  # epochs differ


def test_image_folder_with_splits(tmp_path, rng):
    for split, count in (("train", 6), ("val", 3)):
        for name in ("cat", "dog", "eel"):
            _write_images(tmp_path / split / name, count, rng)
    data = load_data(_config(dataset="folder", data_dir=str(tmp_path)), 4)
    assert (data.num_classes, data.train_examples, data.eval_examples) == (3, 18, 9)
    images, labels = next(iter(data.train))
    assert images.shape == (4, 16, 16, 3) and labels.shape == (4, 3)


def test_image_folder_holdout_and_bad_files(tmp_path, rng, capsys):
    for name in ("a", "b"):
        _write_images(tmp_path / name, 20, rng)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not an image")
    messages = []
    data = load_data(
        _config(dataset="folder", data_dir=str(tmp_path), holdout_fraction=0.25),
        4,
        log=messages.append,
    )
    assert data.train_examples + data.eval_examples == 40 and data.eval_examples > 0
    assert (
        data.skipped_files == 1
        and "skipped 1 undecodable" in messages[0]
        and "broken.jpg" in messages[0]
    )
    assert sum(int(b[0].shape[0]) for b in data.eval) == data.eval_examples


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda root, rng: None, r"does not exist"),
        (lambda root, rng: root.mkdir(), r"0 class subfolder"),
        (
            lambda root, rng: _write_images(root / "only", 4, rng),
            r"1 class subfolder\(s\) \(only\)",
        ),
        (
            lambda root, rng: [(root / n).mkdir(parents=True) for n in ("a", "b")],
            r"holds no images",
        ),
    ],
)
def test_bad_image_folders(tmp_path, rng, setup, message):
    root = tmp_path / "images"
    setup(root, rng)
    with pytest.raises(DataError, match=message):
        load_data(_config(dataset="folder", data_dir=str(root)), 4)


def test_folder_needs_data_dir():
    with pytest.raises(DataError, match="needs --data-dir"):
        load_data(_config(dataset="folder", data_dir=None), 4)


def test_unknown_tfds_dataset_fails_fast(tmp_path):
    with pytest.raises(DataError, match=r"Unknown dataset 'no_such_dataset'.*bnkeras_shapes"):
        load_data(_config(dataset="no_such_dataset", data_dir=str(tmp_path)), 4)


def test_missing_tfds_dataset_fails_within_seconds(tmp_path):
    """Not on disk: no minutes of download retries, a message naming --data-dir."""
    start = time.monotonic()
    if data_module._network_answers():  # pragma: no cover - this machine has no network
        pytest.skip("the network answers here, so TFDS would download")
    with pytest.raises(
        DataError, match=r"'mnist' is not prepared under .* network does not answer.*--data-dir"
    ):
        load_data(_config(dataset="mnist", data_dir=str(tmp_path)), 4)
    assert time.monotonic() - start < 60  # TFDS alone would retry downloads for minutes


def test_manual_download_dataset_names_the_manual_dir(tmp_path):
    with pytest.raises(DataError, match=r"imagenet2012.*manual download.*downloads/manual"):
        load_data(_config(dataset="imagenet2012", data_dir=str(tmp_path)), 4)


def test_batch_larger_than_dataset(shapes_dir):
    with pytest.raises(DataError, match=r"batch size 128 is larger than the 64 training images"):
        load_data(
            _config(data_dir=shapes_dir, train_split="train[:64]", eval_split="test[:8]"), 128
        )
