import logging
import random
import time
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from bnkeras.training import data as data_module
from bnkeras.training.config import DEFAULTS, ConfigError
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


def test_image_folder_holdout_and_bad_files(tmp_path, rng):
    for name in ("a", "b"):
        _write_images(tmp_path / name, 20, rng)
    (tmp_path / "a" / "broken.jpg").write_bytes(b"not an image")
    with pytest.warns(
        UserWarning, match=r"Skipped 1 training image file\(s\).*cannot decode.*broken.jpg"
    ):
        data = load_data(
            _config(dataset="folder", data_dir=str(tmp_path), holdout_fraction=0.25), 4
        )
    assert data.train_examples + data.eval_examples == 40 and data.eval_examples > 0
    assert data.skipped_files == 1
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
            r"class folder \S+/images/a is empty",
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


def _dataset_graph_nodes(dataset):
    """Nodes of a tf.data pipeline's graph, functions included."""
    graph = tf.compat.v1.GraphDef.FromString(
        tf.raw_ops.DatasetToGraphV2(input_dataset=dataset._variant_tensor).numpy()
    )
    return len(graph.node) + sum(len(f.node_def) for f in graph.library.function)


def test_pipeline_size_does_not_grow_with_the_epoch_count(shapes_dir):
    config = _config(data_dir=shapes_dir, train_split="train[:64]", eval_split="test[:16]")
    one = load_data(config, 16, epochs=(0, 1)).train
    thousand = load_data(config, 16, epochs=(0, 1000)).train
    assert _dataset_graph_nodes(one) == _dataset_graph_nodes(thousand)
    # The epochs are really there: 64 images in batches of 16 are 4 batches an epoch.
    assert sum(1 for _ in load_data(config, 16, epochs=(0, 3)).train) == 3 * 4
    assert sum(1 for _ in thousand.take(4 * 5)) == 4 * 5  # at least 5 of the 1000 epochs


@pytest.mark.parametrize("global_seeds", [(0, 0), (0, 123)])
def test_epoch_k_batches_are_the_same_from_epoch_0_or_k(shapes_dir, global_seeds):
    """Resume is exact: epoch 2 of a pipeline started at 0 equals a pipeline started
    at 2, whatever the process's global TensorFlow seed."""
    config = _config(data_dir=shapes_dir, train_split="train[:48]", eval_split="test[:16]")
    tf.random.set_seed(global_seeds[0])
    whole = [(x.numpy(), y.numpy()) for x, y in load_data(config, 16, epochs=(0, 3)).train]
    tf.random.set_seed(global_seeds[1])
    resumed = [(x.numpy(), y.numpy()) for x, y in load_data(config, 16, epochs=(2, 3)).train]
    assert len(whole) == 9 and len(resumed) == 3
    for (image_a, label_a), (image_b, label_b) in zip(whole[6:], resumed, strict=True):
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(label_a, label_b)
    labels = [np.argmax(y, -1).tolist() for _, y in whole]
    assert labels[0:3] != labels[3:6] != labels[6:9]  # each epoch has its own order
    other_seed = load_data({**config, "seed": 1}, 16, epochs=(2, 3)).train
    assert not np.array_equal(next(iter(other_seed))[0].numpy(), resumed[0][0])


def test_train_batches_gives_exactly_the_count_asked(shapes_dir):
    config = _config(data_dir=shapes_dir, train_split="train[:64]", eval_split="test[:16]")
    data = load_data(config, 16, epochs=(0, 1))
    assert data.steps_per_epoch == 4
    batches = [x.numpy() for x, _ in data.train_batches(10, first_epoch=1)]
    epochs_1_to_3 = [x.numpy() for x, _ in data.train_epochs(1, 4)]
    assert len(batches) == 10
    for a, b in zip(batches, epochs_1_to_3[:10], strict=True):
        np.testing.assert_array_equal(a, b)


def test_small_epochs_warn_and_say_what_to_change(shapes_dir):
    config = _config(data_dir=shapes_dir, train_split="train[:111]", eval_split="test[:16]")
    with pytest.warns(
        UserWarning,
        match=r"Small training epochs \(111 training images, batch size 64\): an epoch has only "
        r"1 step\(s\) and the incomplete last batch leaves out 47 image\(s\) \(42%\) each epoch. "
        r"Lower --batch-size \(e.g. 8\)",
    ):
        load_data(config, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_data({**config, "train_split": "train[:160]"}, 16)  # 10 steps, nothing left out


def test_evaluation_reads_and_checks_only_the_evaluation_split(tmp_path, rng):
    for split in ("train", "val"):
        for name in ("cat", "dog"):
            _write_images(tmp_path / split / name, 3, rng)
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_data(_config(dataset="folder", data_dir=str(tmp_path)), 2, train=False)
    assert data.train is None and data.eval_examples == 6 and data.skipped_files == 0
    with pytest.warns(UserWarning, match=r"Skipped 1 training image.*cannot decode.*broken.png"):
        load_data(_config(dataset="folder", data_dir=str(tmp_path)), 2)


def test_first_run_generation_is_quiet_and_leaves_the_global_random_state(tmp_path, capfd, caplog):
    """The same seed gives the same weights whether or not the embedded dataset had
    to be generated first; TFDS's banner and progress bars stay silent."""

    def weights_after(prepare):
        keras.utils.set_random_seed(7)
        prepare()
        layer = keras.layers.Dense(4)
        layer.build((None, 3))
        return layer.kernel.numpy(), random.random(), np.random.random()

    config = _config(data_dir=str(tmp_path / "fresh"), train_split="train[:32]")
    baseline = weights_after(lambda: None)
    capfd.readouterr()
    with caplog.at_level(logging.INFO, logger="bnkeras"):
        fresh = weights_after(lambda: load_data(config, 16))
    output = capfd.readouterr()
    np.testing.assert_array_equal(baseline[0], fresh[0])
    assert baseline[1:] == fresh[1:]
    assert "generating the embedded dataset bnkeras_shapes" in caplog.text
    for text in (output.out, output.err):
        assert "Downloading and preparing" not in text and "examples/s" not in text
        assert "\x1b[" not in text


def test_verification_batch_is_the_first_evaluation_batch(shapes_dir, tmp_path):
    from bnkeras.training.config import build_config, dump
    from bnkeras.training.workdir import verification_batch

    config = build_config(
        "demo",
        ["data.image_size=16", "data.train_split=train[:64]", "data.eval_split=test[:24]"],
        {"data.data_dir": shapes_dir},
    )
    (tmp_path / "config.yaml").write_text(dump(config))
    images = verification_batch(tmp_path, 8)
    expected = next(iter(load_data(config["data"], 8, train=False).eval))[0].numpy()
    assert images.shape == (8, 16, 16, 3)
    np.testing.assert_array_equal(images, expected)
    # A directory without a run raises (the export says why it falls back to random inputs).
    with pytest.raises(ConfigError, match="missing holds no config.yaml"):
        verification_batch(tmp_path / "missing", 8)
