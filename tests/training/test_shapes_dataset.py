import hashlib
import itertools

import numpy as np
import pytest

from bnkeras.training import shapes_dataset
from bnkeras.training.shapes_dataset import CLASSES, CONFIGS, IMAGE_SIZE, _mask, generate

# sha256 of the first 25 examples (image bytes, then the label as one byte) of each split of
# the default configuration, computed with the generator before configurations existed.
DEFAULT_HASHES = {
    "train": "dff529bca3f6d40db63e5fc699030e485688e3964ef6ae2af9f0c87bfc587036",
    "test": "d14427d630993ee501016556ec15427e89155f02aa287b4342f1dd4b03e6e298",
}


def _hash(examples):
    digest = hashlib.sha256()
    for _, example in examples:
        digest.update(example["image"].tobytes())
        digest.update(int(example["label"]).to_bytes(1, "little"))
    return digest.hexdigest()


def _first(split, count, config="default"):
    return list(itertools.islice(generate(split, config), count))


@pytest.mark.parametrize("split", ["train", "test"])
def test_default_configuration_is_unchanged(split):
    assert _hash(_first(split, 25)) == DEFAULT_HASHES[split]
    assert _hash(_first(split, 25, "default")) == DEFAULT_HASHES[split]


def test_hard_configuration_is_deterministic_and_not_the_default():
    first, again = _first("train", 25, "hard"), _first("train", 25, "hard")
    assert _hash(first) == _hash(again)
    assert _hash(first) != DEFAULT_HASHES["train"]
    assert _hash(_first("test", 25, "hard")) != _hash(first)  # the splits have their own seeds
    image = first[0][1]["image"]
    assert image.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and image.dtype == np.uint8


def test_hard_configuration_has_twenty_balanced_classes():
    hard = CONFIGS["hard"]
    assert len(hard.classes) == 20 == len(set(hard.classes))
    assert hard.classes[0] == "small_disk" and hard.classes[-1] == "large_dots"
    labels = [example["label"] for _, example in _first("train", 400, "hard")]
    np.testing.assert_array_equal(np.bincount(labels), [20] * 20)
    for count, _ in hard.splits.values():
        assert count % len(hard.classes) == 0  # whole splits are balanced too


def test_hard_size_classes_are_separable_and_fit_the_image():
    # "small_X" and "large_X" differ only in the radius range: disjoint ranges leave no image
    # whose size contradicts its label; every object fits inside the image.
    radius = CONFIGS["hard"].radius
    assert radius["small"][1] < radius["large"][0]
    rng = np.random.default_rng(0)
    for label in range(len(CLASSES)):
        areas = {
            size: [_mask(label, rng, IMAGE_SIZE, radius[size]).sum() for _ in range(20)]
            for size in ("small", "large")
        }
        assert max(areas["small"]) < max(areas["large"])
        assert min(min(a) for a in areas.values()) > 0  # never an empty object


def test_hard_configuration_is_harder_by_construction():
    default, hard = CONFIGS["default"], CONFIGS["hard"]
    assert hard.min_contrast < default.min_contrast
    assert hard.noise[0] > default.noise[0] and hard.noise[1] > default.noise[1]
    assert default.clutter == (0, 0) and hard.clutter[0] >= 1


def test_unknown_configuration_is_refused():
    with pytest.raises(ValueError, match=r"config must be one of \['default', 'hard'\]"):
        next(generate("train", "harder"))
    assert shapes_dataset.CLASSES == CLASSES  # the TFDS builder's classes stay the default's
