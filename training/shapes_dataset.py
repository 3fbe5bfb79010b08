"""`bnkeras_shapes`: the embedded, offline image-classification dataset (a TFDS builder).

Ten classes of shapes and textures drawn with NumPy: each image has a random
background colour with noise, and one object of a random colour (far enough from
the background), position, size and line width. Everything is generated from a
fixed seed, so every machine builds the same dataset in seconds, without network:

    import bnkeras.training.shapes_dataset  # registers the builder
    ds = tfds.load("bnkeras_shapes", split="train", data_dir=...)

Learnable by a small CNN in a few minutes, but not trivially: sizes, colours,
positions and noise vary, and some classes differ only in orientation.

`generate(split, config)` is the one generator. `config="default"` is the dataset
above (the TFDS builder's; its examples never change). `config="hard"` is a harder
set for measurements that the default one saturates (a small CNN reaches ~0.99
on it): 20 classes, each of the 10 shapes in two size ranges ("small_disk" ...
"large_dots"; radius 0.13-0.21 vs 0.30-0.42 of the image), clutter (2 to 4 thin
line segments of random colours behind the object), lower contrast (object and
background colours at least 60 apart, summed over RGB, instead of 180) and
stronger noise (sd 12-36 instead of 4-20); 10000 train / 2000 test images,
balanced, from their own seeds. It is read as arrays (the experiments'
`data.shapes(config="hard")`); the TFDS builder serves the default configuration.
"""

import functools
from dataclasses import dataclass

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


@dataclass(frozen=True)
class Config:
    """How `generate` draws a configuration's images (see the module docstring)."""

    classes: tuple
    splits: dict  # split: (examples, seed)
    radius: dict  # size attribute: (low, high) radius as a fraction of the image
    min_contrast: float  # least summed |object - background| colour difference
    noise: tuple  # (low, high) of the per-image noise sd
    clutter: tuple  # (low, high) inclusive count of distractor line segments


SIZES = ("small", "large")
CONFIGS = {
    "default": Config(CLASSES, SPLITS, {None: (0.22, 0.42)}, 180.0, (4, 20), (0, 0)),
    "hard": Config(
        tuple(f"{size}_{name}" for size in SIZES for name in CLASSES),
        {"train": (10000, 3), "test": (2000, 4)},
        {"small": (0.13, 0.21), "large": (0.30, 0.42)},
        60.0,
        (12, 36),
        (2, 4),
    ),
}


@functools.lru_cache(maxsize=4)
def _grid(size):
    """Pixel-centre coordinates (read-only: shared between calls)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    ys.setflags(write=False)
    xs.setflags(write=False)
    return ys, xs


def _mask(label, rng, size=IMAGE_SIZE, radius_range=(0.22, 0.42)):
    """Boolean mask of one object of shape `CLASSES[label]`."""
    ys, xs = _grid(size)
    radius = rng.uniform(*radius_range) * size
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


def _segment(rng, size):
    """Boolean mask of a thin line segment (a distractor of the hard configuration)."""
    ys, xs = _grid(size)
    y0, x0 = rng.uniform(0, size, 2)
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.2, 0.45) * size
    dy, dx = np.sin(angle), np.cos(angle)
    along = (ys - y0) * dy + (xs - x0) * dx
    across = np.abs((ys - y0) * dx - (xs - x0) * dy)
    return (np.abs(along) < length / 2) & (across < rng.uniform(0.5, 1.0))


def make_image(label, rng, size=IMAGE_SIZE, config="default"):
    """One uint8 RGB image of class `label` of configuration `config`."""
    c = CONFIGS[config]
    background = rng.uniform(0, 255, 3)
    colour = rng.uniform(0, 255, 3)
    while np.abs(colour - background).sum() < c.min_contrast:
        colour = rng.uniform(0, 255, 3)
    image = np.empty((size, size, 3), np.float32)
    image[:] = background
    if c.clutter[1]:
        for _ in range(rng.integers(c.clutter[0], c.clutter[1] + 1)):
            image[_segment(rng, size)] = rng.uniform(0, 255, 3)
    if len(c.radius) == 1:
        shape, radius_range = label, c.radius[None]
    else:
        attribute, shape = divmod(label, len(CLASSES))
        radius_range = c.radius[SIZES[attribute]]
    image[_mask(shape, rng, size, radius_range)] = colour
    image += rng.normal(0, rng.uniform(*c.noise), image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def generate(split, config="default"):
    """(key, example) pairs of a split of configuration `config`, deterministic.

    Labels cycle through the classes (every prefix of a multiple of the class
    count is balanced).
    """
    if config not in CONFIGS:
        raise ValueError(f"config must be one of {sorted(CONFIGS)}; got {config!r}")
    c = CONFIGS[config]
    count, seed = c.splits[split]
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = index % len(c.classes)
        yield index, {"image": make_image(label, rng, config=config), "label": label}


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
