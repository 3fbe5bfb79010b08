"""`bnkeras_shapes`: the embedded, offline image-classification dataset (a TFDS builder).

Ten classes of shapes and textures drawn with NumPy: each image has a random
background colour with noise, and one object of a random colour (far enough from
the background), position, size and line width. Everything is generated from a
fixed seed, so every machine builds the same dataset in seconds, without network:

    import bnkeras.training.shapes_dataset  # registers the builder
    ds = tfds.load("bnkeras_shapes", split="train", data_dir=...)

Learnable by a small CNN in a few minutes, but not trivially: sizes, colours,
positions and noise vary, and some classes differ only in orientation.
"""

import numpy as np
import tensorflow_datasets as tfds

from bnkeras._compat import quiet_download_banner

CLASSES = (
    "disk",
    "ring",
    "square",
    "triangle",
    "cross",
    "diagonal_cross",
    "horizontal_stripes",
    "vertical_stripes",
    "checkerboard",
    "dots",
)
IMAGE_SIZE = 32
SPLITS = {"train": (6000, 1), "test": (1000, 2)}  # split: (examples, seed)


def _grid(size):
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return ys + 0.5, xs + 0.5


def _mask(label, rng, size=IMAGE_SIZE):
    """Boolean mask of one object of class `label`."""
    ys, xs = _grid(size)
    radius = rng.uniform(0.22, 0.42) * size
    cy, cx = rng.uniform(radius * 0.8, size - radius * 0.8, 2)
    dy, dx = ys - cy, xs - cx
    width = rng.uniform(0.08, 0.16) * size
    name = CLASSES[label]
    inside_box = (np.abs(dy) < radius) & (np.abs(dx) < radius)
    if name == "disk":
        return dy**2 + dx**2 < radius**2
    if name == "ring":
        distance = np.sqrt(dy**2 + dx**2)
        return (distance < radius) & (distance > radius - width)
    if name == "square":
        return (np.abs(dy) < radius * 0.8) & (np.abs(dx) < radius * 0.8)
    if name == "triangle":
        return (dy < radius * 0.7) & (dy > -radius) & (np.abs(dx) < (dy + radius) * 0.6)
    if name == "cross":
        return inside_box & ((np.abs(dy) < width / 2) | (np.abs(dx) < width / 2))
    if name == "diagonal_cross":
        return inside_box & ((np.abs(dy - dx) < width * 0.7) | (np.abs(dy + dx) < width * 0.7))
    period = rng.uniform(4.0, 7.0)
    phase = rng.uniform(0, period)
    if name == "horizontal_stripes":
        return inside_box & (((ys + phase) % period) < period / 2)
    if name == "vertical_stripes":
        return inside_box & (((xs + phase) % period) < period / 2)
    if name == "checkerboard":
        return inside_box & (
            ((((ys + phase) // (period / 2)) + ((xs + phase) // (period / 2))) % 2) == 0
        )
    # dots: a lattice of small disks
    spacing = rng.uniform(5.0, 8.0)
    ry = (ys - cy) % spacing - spacing / 2
    rx = (xs - cx) % spacing - spacing / 2
    return inside_box & (ry**2 + rx**2 < (spacing * 0.28) ** 2)


def make_image(label, rng, size=IMAGE_SIZE):
    """One uint8 RGB image of class `label`."""
    background = rng.uniform(0, 255, 3)
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - background).sum() < 180:
        colour = rng.uniform(0, 255, 3)
    image = np.empty((size, size, 3), np.float32)
    image[:] = background
    image[_mask(label, rng, size)] = colour
    image += rng.normal(0, rng.uniform(4, 20), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate(split):
    """(key, example) pairs of a split, deterministic."""
    count, seed = SPLITS[split]
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % len(CLASSES)
        yield index, {"image": make_image(label, rng), "label": label}


# Nothing is downloaded: TFDS's "Downloading and preparing dataset Unknown size" banner
# and its "downloaded and prepared" line would only confuse; the data module logs one
# line instead.
@quiet_download_banner
class BnkerasShapes(tfds.core.GeneratorBasedBuilder):
    """Synthetic shapes and textures, 10 classes, 32x32 RGB; generated offline."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def _info(self):
        # DatasetInfo directly: dataset_info_from_configs reads metadata files from
        # the package directory, which editable installs map elsewhere.
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 3)),
                    "label": tfds.features.ClassLabel(names=list(CLASSES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {split: self._generate_examples(split) for split in SPLITS}

    def _generate_examples(self, split):
        yield from generate(split)
