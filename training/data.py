"""Input pipelines: TFDS datasets, ImageNet-layout image folders and the embedded dataset.

`load_data(data_config, global_batch_size)` returns a `Data` with batched
`tf.data` pipelines for training (random-resized crop, horizontal flip; each
epoch a function of the seed and the epoch, so resumed runs are exact) and
evaluation (resize and centre crop), both normalized per channel, labels one-hot.

Sources (`data.dataset`):
- `bnkeras_shapes`: the embedded dataset (training/shapes_dataset.py), generated
  offline into the TFDS data dir on first use, in seconds.
- any TFDS image-classification name (cifar10, imagenette, imagenet2012, ...),
  read from `data.data_dir`. A dataset that is not prepared there is downloaded
  only when the network answers; otherwise the run stops at once with a message
  naming `--data-dir` (and the manual download directory for imagenet2012).
- `folder`: an ImageNet-layout folder at `data.data_dir`: one subfolder per class,
  either inside split folders (`train/` and one of `val/`, `validation/`, `valid/`,
  else `test/`, matched case-insensitively; the log says which one evaluates), or
  directly, in which case `data.holdout_fraction` of each class is held out for
  evaluation by a hash of each file's path inside its class folder (the same files
  stay held out when a class folder is renamed or files are added). Split folders
  mixed with other folders, an empty class folder, or a bnkeras work directory among
  the classes are refused. An image is used when the training decoder
  (`decode_image_file`: JPEG, PNG, GIF, BMP, WebP, JPEG XL) decodes it; the others,
  and files in formats it does not read (TIFF, HEIC, ...), are skipped and counted
  (a warning names the first few); they never stop a run.

A run stores its class names (and held-out rule) in its work directory; reading its
data again with `classes=` labels the images by class name and refuses data with
another class set (`ClassesChanged`).
"""

import contextlib
import dataclasses
import hashlib
import logging
import math
import os
import random
import re
import socket
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf

from bnkeras import _compat
from bnkeras.errors import Error

logger = logging.getLogger(__name__)

EMBEDDED = "bnkeras_shapes"
FOLDER = "folder"
_AUTOTUNE = tf.data.AUTOTUNE
# Epoch e of data.seed s draws its shuffle and augmentation from the stream
# s * EPOCH_SEED_STRIDE + 2 * e (crop) and + 1 (flip): distinct for every (s, e) with
# e < EPOCH_SEED_STRIDE / 2.
EPOCH_SEED_STRIDE = 1_000_003
SHUFFLE_GRAPH_SEED = 1  # any fixed nonzero value
# Below this many steps per epoch, or above this fraction of training images left
# out by the incomplete last batch, load_data warns.
MIN_STEPS_PER_EPOCH = 10
MAX_DROPPED_FRACTION = 0.1


class DataError(Error, ValueError):
    """A dataset that cannot be used; the message names the input and the fix."""


@dataclasses.dataclass
class Data:
    """The pipelines of a run and what describes them.

    `train` holds the batches of the epochs asked for, one epoch after the other
    (`steps_per_epoch` batches each); `train_epochs(first, last)` builds the same
    batches for any other epoch range (cheaply: start-up does not grow with the
    range). `eval` is one pass over the evaluation split. `files` are the
    (record file, record count) pairs read (TFDS) or (image folder, None), named
    when reading fails. `classes` are the class names in label order; `holdout` the
    held-out rule of an image folder without an evaluation split (`HOLDOUT_RULES`).
    """

    train: tf.data.Dataset | None
    eval: tf.data.Dataset
    num_classes: int
    train_examples: int
    eval_examples: int
    description: str
    skipped_files: int = 0
    steps_per_epoch: int = 0
    train_epochs: Callable[[int, int], tf.data.Dataset] | None = None
    files: tuple = ()
    classes: tuple = ()
    holdout: str | None = None

    def train_batches(self, count, first_epoch=0):
        """`count` training batches starting at `first_epoch` (over as many epochs as needed)."""
        epochs = max(1, math.ceil(count / self.steps_per_epoch))
        return self.train_epochs(first_epoch, first_epoch + epochs).take(count)


# ------------------------------------------------------------------ preprocessing


def _random_resized_crop(image, size, min_scale, seed):
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_scale, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, [size, size], method="bilinear", antialias=True)


def _centre_crop(image, size, crop_fraction):
    resize = int(round(size / crop_fraction))
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize / tf.reduce_min(shape)
    new_shape = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    top = (new_shape[0] - size) // 2
    left = (new_shape[1] - size) // 2
    return tf.image.crop_to_bounding_box(image, top, left, size, size)


def _normalizer(config):
    mean = tf.constant(config["mean"], tf.float32) * 255.0
    std = tf.constant(config["std"], tf.float32) * 255.0
    size = int(config["image_size"])

    def normalize(image):
        image = (image - mean) / std
        image.set_shape([size, size, 3])
        return image

    return normalize


def _train_pipeline(examples, config, num_classes, batch_size, epochs):
    """Batches for epochs `epochs[0]` to `epochs[1] - 1`, one epoch after the other.

    Each epoch's order and augmentation are a function of (data.seed, epoch) only:
    a per-epoch shuffle seed and stateless random ops keyed by (epoch, example). A
    resumed run therefore sees exactly the batches an uninterrupted run would. The
    epochs come from one `flat_map` over the epoch numbers, so building the
    pipeline costs the same for 1 or 1000 epochs.
    """
    size, min_scale = int(config["image_size"]), float(config["min_scale"])
    normalize = _normalizer(config)
    base_seed = int(config["seed"]) * EPOCH_SEED_STRIDE

    def epoch_batches(epoch):
        seed = base_seed + 2 * epoch

        def augment(index, example):
            image, label = example
            image = _random_resized_crop(
                tf.cast(image, tf.float32), size, min_scale, tf.stack([seed, index])
            )
            image = tf.image.stateless_random_flip_left_right(image, tf.stack([seed + 1, index]))
            return normalize(image), tf.one_hot(label, num_classes)

        # A shuffle's seed pair is (graph seed, op seed). Fixing the graph seed of this
        # traced function makes the order a function of (data.seed, epoch) alone, not
        # of the process's global seed (which may be 0: TensorFlow then compares the
        # tensor op seed with 0 in Python and fails). `epoch_batches` is traced by
        # flat_map, so this sets the seed of that function's own graph: the process's
        # global seed is left alone (tests/training/test_trainer.py checks it after a run).
        tf.compat.v1.set_random_seed(SHUFFLE_GRAPH_SEED)
        shuffled = examples.shuffle(
            int(config["shuffle_buffer"]), seed=seed, reshuffle_each_iteration=False
        )
        return (
            shuffled.enumerate()
            .map(augment, num_parallel_calls=_AUTOTUNE)
            # A static batch size (drop_remainder): the fused ghost-BN path and an
            # even split over replicas need it.
            .batch(batch_size, drop_remainder=True)
        )

    first, last = epochs
    return tf.data.Dataset.range(first, last).flat_map(epoch_batches).prefetch(_AUTOTUNE)


def _eval_pipeline(examples, config, num_classes, batch_size):
    size, crop_fraction = int(config["image_size"]), float(config["crop_fraction"])
    normalize = _normalizer(config)

    def preprocess(image, label):
        image = _centre_crop(tf.cast(image, tf.float32), size, crop_fraction)
        return normalize(image), tf.one_hot(label, num_classes)

    return (
        examples.map(preprocess, num_parallel_calls=_AUTOTUNE).batch(batch_size).prefetch(_AUTOTUNE)
    )


def _pipelines(train, evaluation, config, num_classes, batch_size):
    """The evaluation pipeline and a function (first, last) -> training epochs;
    `train` is None when only evaluation is needed."""
    if config["cache"]:
        evaluation = evaluation.cache()
        train = train.cache() if train is not None else None

    def train_epochs(first, last):
        return _train_pipeline(train, config, num_classes, batch_size, (first, last))

    return (
        train_epochs if train is not None else None,
        _eval_pipeline(evaluation, config, num_classes, batch_size),
    )


# ------------------------------------------------------------------------- TFDS


def _network_answers(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _tfds_builder(name, data_dir):
    import tensorflow_datasets as tfds

    if name == EMBEDDED:
        import bnkeras.training.shapes_dataset  # noqa: F401  registers the builder
    if not re.match(r"[\w-]+:[A-Za-z_]", name):  # "namespace:name" is TFDS's to judge
        _check_tfds_name(tfds, name)
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.DatasetNotFoundError:
        raise _unknown_dataset(name) from None
    except ImportError as error:  # e.g. a huggingface: dataset without its packages
        raise DataError(
            f"The dataset {name!r} needs the Python package {error.name or error}, which is not "
            f"installed: pip install {error.name or '...'}. Received: data.dataset={name!r}"
        ) from error


def _unknown_dataset(name):
    return DataError(
        f"Unknown dataset {name!r}: give a TFDS image-classification name (e.g. cifar10, "
        f"imagenette, imagenet2012), {EMBEDDED!r} (embedded, offline), or {FOLDER!r} with "
        f"--data-dir pointing at an image folder. Received: data.dataset={name!r}"
    )


def _check_tfds_name(tfds, name):
    """A `DataError` unless `name` ("dataset[/config][:version]") is a registered TFDS
    dataset, with a config and version it has."""
    spec, _, version = name.partition(":")
    base, slash, config = spec.partition("/")
    if base not in tfds.list_builders(with_community_datasets=False):
        raise _unknown_dataset(name)
    builder = tfds.builder_cls(base)
    configs = {c.name: c for c in builder.BUILDER_CONFIGS or ()}
    if slash and config not in configs:
        valid = ", ".join(configs) or "none (give the name alone)"
        raise DataError(
            f"Unknown config {config!r} of dataset {base}: valid configs are {valid}. "
            f"Received: data.dataset={name!r}"
        )
    if version and "*" not in version:
        versions = [builder.VERSION, *(builder.SUPPORTED_VERSIONS or ())]
        if config:
            versions.append(configs[config].version)
        valid = sorted({str(v) for v in versions if v is not None})
        if version not in valid:
            raise DataError(
                f"Unknown version {version!r} of dataset {spec}: valid versions are "
                f"{', '.join(valid)}. Received: data.dataset={name!r}"
            )


@contextlib.contextmanager
def _quiet_and_seed_neutral():
    """Generation of the embedded dataset without TFDS's progress bars, and without
    moving Python's or NumPy's global random state (TFDS draws temporary folder
    names from `random`; Keras draws default initializer seeds from it, so the
    same run would start from other weights on a first run)."""
    import tensorflow_datasets as tfds

    python_state, numpy_state = random.getstate(), np.random.get_state()
    bars = _compat.tfds_progress_bar_shown()
    tfds.disable_progress_bar()
    try:
        yield
    finally:
        tfds.display_progress_bar(bars)
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _prepare(builder, name, data_dir):
    info_file = Path(builder.data_dir) / "dataset_info.json"
    if info_file.exists():
        return
    if name == EMBEDDED:
        logger.info(
            "generating the embedded dataset %s in %s (once, a few seconds)",
            EMBEDDED,
            builder.data_dir,
        )
        with _quiet_and_seed_neutral():
            builder.download_and_prepare()
        return
    where = data_dir or "the default TFDS directory (~/tensorflow_datasets)"
    manual = getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None)
    if manual:
        manual_dir = Path(_compat.tfds_data_dir_root(builder)) / "downloads" / "manual"
        if not manual_dir.exists():
            raise DataError(
                f"Dataset {name!r} is not prepared under {where}, and it needs a manual download: "
                f"put the downloaded files in {manual_dir} (or pass --data-dir pointing at a "
                "directory where it is prepared)."
            )
    elif not _network_answers():
        raise DataError(
            f"Dataset {name!r} is not prepared under {where}, and the network does not answer, "
            f"so it cannot be downloaded. Prepare it on a connected machine (`tfds build {name} "
            "--data_dir DIR`) and pass --data-dir DIR, or use the embedded dataset "
            f"({EMBEDDED})."
        )
    try:
        builder.download_and_prepare()
    except OSError as error:  # the network or the disk, not a write of the run
        raise DataError(
            f"Downloading or preparing dataset {name!r} under {where} failed: "
            f"{error.strerror or error}. Check the network and the free space there, then "
            "rerun (or prepare it elsewhere with `tfds build` and pass --data-dir)."
        ) from error


def _check_split(splits, name, key, split):
    """A `DataError` unless TFDS reads the split `split` (a slice like 'train[:80%]'
    included) of dataset `name` as one or more examples."""
    try:
        count = splits[split].num_examples  # TFDS parses the slice here
    except (ValueError, AssertionError) as error:  # its errors for a slice it cannot read
        detail = " ".join(str(error).split())[:200]
        raise DataError(
            f"data.{key} {split!r} is not a split that TFDS can read from {name!r} ({detail}). "
            f"Give a split ({', '.join(splits)}) or a slice of one, e.g. 'train[:80%]' or "
            f"'test[:256]'. Received: data.{key}={split!r}"
        ) from None
    if count < 1:
        raise DataError(
            f"data.{key} {split!r} holds no examples of {name!r}. Received: data.{key}={split!r}"
        )


def _split_files(builder, split):
    """(record file, record count) of each file of a TFDS split (e.g. "train[:64]")."""
    info = builder.info.splits[split.split("[")[0]]
    return tuple(
        (os.path.join(builder.data_dir, name), count)
        for name, count in zip(info.filenames, info.shard_lengths, strict=True)
    )


def _tfds_data(config, batch_size, with_train, classes=None):
    name, data_dir = config["dataset"], config.get("data_dir")
    if data_dir is not None and not Path(data_dir).exists() and name != EMBEDDED:
        raise DataError(f"--data-dir {data_dir} does not exist.")
    builder = _tfds_builder(name, data_dir)
    _prepare(builder, name, data_dir)
    info = builder.info
    if "label" not in info.features or "image" not in info.features:
        raise DataError(
            f"Dataset {name!r} is not an image-classification dataset (no image/label features)."
        )
    num_classes = info.features["label"].num_classes
    names = tuple(info.features["label"].names)
    if classes is not None and tuple(classes) != names:
        raise ClassesChanged(
            f"Dataset {name!r} has the classes [{', '.join(names)}] but the run was trained on "
            f"[{', '.join(classes)}] (its classes.json): evaluate it on the dataset it was "
            "trained on."
        )
    splits = info.splits
    train_split = config["train_split"]
    eval_split = config["eval_split"] or next(
        (s for s in ("validation", "test") if s in splits), None
    )
    keys = (("train_split", train_split), ("eval_split", eval_split))
    for key, split in keys if with_train else keys[1:]:
        if split is None or split.split("[")[0] not in splits:
            raise DataError(f"Dataset {name!r} has no split {split!r}; it has {', '.join(splits)}.")
        _check_split(splits, name, key, split)

    def read(split):
        return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)

    train_epochs, evaluation = _pipelines(
        read(train_split) if with_train else None,
        read(eval_split),
        config,
        num_classes,
        batch_size,
    )
    train_examples = splits[train_split].num_examples if with_train else 0
    used = f"{train_split}: {train_examples}, " if with_train else ""
    return Data(
        train=None,
        eval=evaluation,
        num_classes=num_classes,
        train_examples=train_examples,
        eval_examples=splits[eval_split].num_examples,
        description=f"{name} ({used}{eval_split}: {splits[eval_split].num_examples} images, "
        f"{num_classes} classes)",
        train_epochs=train_epochs,
        files=(_split_files(builder, train_split) if with_train else ())
        + _split_files(builder, eval_split),
        classes=names,
    )


# ---------------------------------------------------------------- image folders

# Split folders at the top of an image folder (matched case-insensitively): training
# reads train/, evaluation the first of val/, validation/, valid/, else test/.
TRAIN_SPLIT = "train"
EVAL_SPLITS = ("val", "validation", "valid", "test")
SPLIT_NAMES = (TRAIN_SPLIT, *EVAL_SPLITS)
# The file extensions of every format the training decoder (`decode_image_file`,
# tf.io.decode_image) reads: JPEG, PNG, GIF, BMP, WebP and JPEG XL. The decoder tells
# the format from the bytes; a file it cannot decode is skipped and counted.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".webp", ".jxl"}
)
# Image formats that TensorFlow's decoder does not read: skipped, counted and named.
UNDECODED_EXTENSIONS = frozenset(
    {".tif", ".tiff", ".heic", ".heif", ".avif", ".jp2", ".j2k", ".ico", ".ppm", ".pgm",
     ".pbm", ".pnm", ".psd", ".svg", ".dng", ".cr2", ".nef", ".arw"}
)  # fmt: skip
# The held-out split of a folder without split folders (`data.holdout_fraction` of each
# class): a file is held out when the SHA-1 of its path inside its class folder falls
# below the fraction. Each file's place depends on its own name only, so the same files
# stay held out when a class folder is renamed or moved, or files are added or removed.
HOLDOUT_BY_NAME = "sha1-of-path-in-class"
# The rule of runs trained before the runs stored it: the path inside the data folder
# (a renamed class folder moves files between the splits).
HOLDOUT_BY_PATH = "sha1-of-path-in-data-folder"
HOLDOUT_RULES = (HOLDOUT_BY_NAME, HOLDOUT_BY_PATH)
NAMED_FILES = 3  # files named in a warning
FORMATS = "JPEG, PNG, GIF, BMP, WebP or JPEG XL"


class ClassesChanged(DataError):
    """The data's classes are not the classes a run was trained on."""


def decode_image_file(path):
    """The training decoder: a file as an RGB uint8 image (an animation's first frame)."""
    return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)


def _decodable(paths):
    """For each of `paths`: True when `decode_image_file` decodes it to an image with
    pixels (decoded in parallel, as training does; unreadable files are False)."""
    if not paths:
        return []

    def attempt(index, path):
        return index, tf.size(decode_image_file(path))

    attempts = (
        tf.data.Dataset.from_tensor_slices(tf.constant(paths))
        .enumerate()
        .map(attempt, num_parallel_calls=_AUTOTUNE, deterministic=False)
        .ignore_errors()
    )
    ok = [False] * len(paths)
    for index, size in attempts.as_numpy_iterator():
        ok[index] = size > 0
    return ok


def _examples(paths):
    """At most NAMED_FILES of `paths`, comma separated."""
    return ", ".join(str(p) for p in paths[:NAMED_FILES])


def _visible_dirs(folder):
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


@dataclasses.dataclass
class _ClassFiles:
    """The files under one class folder (at every depth; hidden ones left out)."""

    folder: Path
    images: list  # paths with an extension of IMAGE_EXTENSIONS
    undecoded: list  # paths with an extension of UNDECODED_EXTENSIONS
    other: list  # any other file (not an image)


def _class_files(folder, root):
    from bnkeras.training.workdir import is_run

    images, undecoded, other = [], [], []
    for current, dirs, files in os.walk(folder):
        if is_run(current):
            raise DataError(
                f"Image folder {root} holds the bnkeras work directory {current}, whose files "
                "(curves.png, ...) would be read as images: move it out of the image folder."
            )
        splits = sorted(d for d in dirs if d.lower() in SPLIT_NAMES)
        if splits:
            raise DataError(
                f"Image folder {root}: the class folder {current} holds the split folder(s) "
                f"{', '.join(s + '/' for s in splits)}; their images would all be one class. "
                f"Put the splits at the top ({root}/train/CLASS/, {root}/val/CLASS/) or "
                "rename those folders."
            )
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(current, name)
            extension = os.path.splitext(name)[1].lower()
            if extension in IMAGE_EXTENSIONS:
                images.append(path)
            elif extension in UNDECODED_EXTENSIONS:
                undecoded.append(path)
            else:
                other.append(path)
    return _ClassFiles(folder, sorted(images), sorted(undecoded), sorted(other))


@dataclasses.dataclass
class _Folder:
    """An image folder read: its classes and the (path, label) pairs of each split."""

    root: Path
    classes: list
    train: list
    eval: list
    holdout: str | None  # the held-out rule, None with split folders
    description: str
    skipped: int = 0


def _split_layout(root, with_train, classes):
    """(class folder root, eval folder or None, description) of `root`'s top level.

    Without split folders, the classes are `root`'s folders (and part of each is held
    out); with them, the classes are train/'s folders, evaluated on val/ (or
    validation/, valid/, else test/). A mixture of split and other folders is refused.
    """
    top = _visible_dirs(root)
    splits = [d for d in top if d.name.lower() in SPLIT_NAMES]
    if not splits:
        logger.info(
            "image folder %s: one folder per class, evaluating on data.holdout_fraction of each "
            "class (no train/ and val/ or test/ split folders)",
            root,
        )
        return root, None, "held-out part of each class"
    others = [d.name for d in top if d.name.lower() not in SPLIT_NAMES]
    names = ", ".join(d.name + "/" for d in splits)
    if others:
        raise DataError(
            f"Image folder {root} mixes split folders ({names}) with other folders "
            f"({', '.join(others[:5])}): put every class folder inside the split folders "
            f"({root}/train/CLASS/ and {root}/val/CLASS/ or {root}/test/CLASS/), or remove "
            f"the split folders to hold out data.holdout_fraction of each class."
        )
    by_name = {}
    for folder in splits:
        by_name.setdefault(folder.name.lower(), []).append(folder)
    doubled = [
        f"{', '.join(d.name for d in found)}" for found in by_name.values() if len(found) > 1
    ]
    evaluated = [by_name[s][0] for s in EVAL_SPLITS if s in by_name]
    val_like = [d for d in evaluated if d.name.lower() != "test"]
    if doubled or len(val_like) > 1:
        clash = "; ".join(doubled) or ", ".join(d.name for d in val_like)
        raise DataError(
            f"Image folder {root} has more than one folder for a split ({clash}): keep one "
            "train/ and one of val/, validation/, valid/ (evaluated) or test/."
        )
    train = by_name.get(TRAIN_SPLIT, [None])[0]
    if train is None and (with_train or classes is None):
        raise DataError(
            f"Image folder {root} has the split folder(s) {names} but no train/: put the "
            f"training images in {root}/train/CLASS/."
        )
    if not evaluated:
        logger.info(
            "image folder %s: training on %s/, evaluating on data.holdout_fraction of each class "
            "(no val/ or test/)",
            root,
            train.name,
        )
        return train, None, f"{train.name}/ and a held-out part of each class"
    unused = [d.name + "/" for d in evaluated[1:]]
    logger.info(
        "image folder %s: %sevaluating on %s/%s",
        root,
        f"training on {train.name}/, " if with_train else "",
        evaluated[0].name,
        f" ({', '.join(unused)} not used)" if unused else "",
    )
    return train, evaluated[0], f"{train.name if train else TRAIN_SPLIT}/ and {evaluated[0].name}/"


def _class_names(folder, root):
    """The class folders of `folder`; a split name or a bnkeras run among them is refused."""
    from bnkeras.training.workdir import is_run

    names = []
    for path in _visible_dirs(folder):
        if path.name.lower() in SPLIT_NAMES:
            raise DataError(
                f"Image folder {root}: {path} is named like a split folder but is a class "
                f"folder of {folder}: rename it (or put the splits at the top of {root})."
            )
        if is_run(path):
            raise DataError(
                f"Image folder {root} holds the bnkeras work directory {path}, which would be "
                "read as a class: move it out of the image folder."
            )
        names.append(path.name)
    return names


def _check_classes(found, stored, where, subset=False):
    """The class order to label by: `stored` (a run's classes) when given, else `found`."""
    if stored is None:
        return list(found)
    stored = list(stored)
    differ = not set(found) <= set(stored) if subset else set(found) != set(stored)
    if differ:
        raise ClassesChanged(
            f"{where} has the classes [{', '.join(sorted(found))}] but the run was trained on "
            f"[{', '.join(stored)}] (its classes.json): give the data it was trained on, with "
            "the class folders named as they were, or train a new run on this data."
        )
    return stored


def _labelled(folders, classes, root, what, require_each=True):
    """(path, label) pairs of the decodable images of `folders` ({class: _ClassFiles}),
    and the number of image files skipped. With `require_each`, a class folder without
    a decodable image is refused."""
    paths = [p for files in folders.values() for p in files.images]
    ok = dict(zip(paths, _decodable(paths), strict=True))
    bad = [p for p in paths if not ok[p]]
    undecoded = [p for files in folders.values() for p in files.undecoded]
    other = [p for files in folders.values() for p in files.other]
    if paths and not any(ok.values()):
        raise DataError(
            f"None of the {len(paths)} {what} images in {root} can be decoded "
            f"(e.g. {_examples(bad)}): check the files ({FORMATS})."
        )
    for name, files in folders.items():
        if require_each and not any(ok[p] for p in files.images):
            found = files.images + files.undecoded + files.other
            raise DataError(
                f"The class folder {files.folder} holds no {what} image that TensorFlow can "
                f"decode ({len(found)} file(s){', e.g. ' + _examples(found) if found else ''}), "
                f"so class {name!r} has no {what} images: add images ({FORMATS}) or remove "
                "the folder."
            )
    parts = []
    if bad:
        parts.append(f"{len(bad)} that TensorFlow cannot decode (e.g. {_examples(bad)})")
    if undecoded:
        formats = ", ".join(sorted({os.path.splitext(p)[1].lower() for p in undecoded}))
        parts.append(
            f"{len(undecoded)} in formats TensorFlow does not read ({formats}; e.g. "
            f"{_examples(undecoded)}): convert them to PNG or JPEG"
        )
    if parts:
        warnings.warn(
            f"Skipped {len(bad) + len(undecoded)} {what} image file(s) in {root}: "
            + "; ".join(parts),
            stacklevel=4,
        )
    if other:
        logger.info(
            "%s: ignored %d %s file(s) that are not images (e.g. %s)",
            root,
            len(other),
            what,
            _examples(other),
        )
    label = {name: index for index, name in enumerate(classes)}
    pairs = [(p, label[name]) for name, files in folders.items() for p in files.images if ok[p]]
    return pairs, len(bad) + len(undecoded)


def _require_files(folders):
    """Refuses a class folder that holds no file at all (an empty class)."""
    for name, files in folders.items():
        if not (files.images or files.undecoded or files.other):
            raise DataError(
                f"The class folder {files.folder} is empty, so class {name!r} has no images: "
                f"add images ({FORMATS}) or remove the folder."
            )


def _held_out(holdout, fraction, root):
    """A predicate (path, class folder) -> True when the file is held out for evaluation."""
    if holdout not in HOLDOUT_RULES:
        raise DataError(
            f"Unknown held-out rule {holdout!r} (this bnkeras knows {', '.join(HOLDOUT_RULES)}): "
            "update bnkeras to read this run."
        )

    def held_out(path, folder):
        base = folder if holdout == HOLDOUT_BY_NAME else root
        name = Path(os.path.relpath(path, base)).as_posix()
        digest = hashlib.sha1(name.encode()).digest()
        return int.from_bytes(digest[:4], "big") / 2**32 < fraction

    return held_out


def _split_class(files, held_out, held):
    """The part of a class's files that `held_out` puts in the held-out split (`held`) or not."""

    def part(paths):
        return [p for p in paths if held_out(p, files.folder) == held]

    return dataclasses.replace(
        files, images=part(files.images), undecoded=part(files.undecoded), other=part(files.other)
    )


def _folder_files(config, with_train=True, classes=None, holdout=HOLDOUT_BY_NAME):
    """The image folder of `config`: its classes and decodable (path, label) pairs.

    `classes` (a run's stored classes) fixes the labels by name: the folder must have
    that class set (the evaluated split may lack some), else `ClassesChanged`.
    `holdout` is the held-out rule (HOLDOUT_RULES) of a folder without an evaluation
    split. Only the files of the splits read are decoded (`with_train`).
    """
    if not config.get("data_dir"):
        raise DataError(
            f"dataset {FOLDER!r} needs --data-dir: the image folder (one subfolder per class)."
        )
    root = Path(config["data_dir"])
    if not root.is_dir():
        raise DataError(f"--data-dir {root} does not exist or is not a directory.")
    class_root, eval_root, layout = _split_layout(root, with_train, classes)
    if class_root is None:  # evaluation only, of a run's classes: eval_root's must be among them
        classes = _check_classes(_class_names(eval_root, root), classes, eval_root, subset=True)
    else:
        classes = _check_classes(_class_names(class_root, root), classes, class_root)
    if len(classes) < 2:
        raise DataError(
            f"Image folder {class_root or root} has {len(classes)} class subfolder(s) "
            f"({', '.join(classes) or 'none'}); a classifier needs at least 2."
        )
    train_files, skipped = [], 0
    if eval_root is not None:
        evaluated = _class_names(eval_root, root)
        extra = sorted(set(evaluated) - set(classes))
        if extra:
            raise DataError(
                f"{eval_root} has class folder(s) that {class_root} lacks "
                f"({', '.join(extra[:5])}): the model has no output for them; add them "
                f"to {class_root} or remove them from {eval_root}."
            )
        eval_folders = {n: _class_files(eval_root / n, root) for n in classes if n in evaluated}
        train_folders = (
            {n: _class_files(class_root / n, root) for n in classes} if with_train else {}
        )
        _require_files(eval_folders)
        _require_files(train_folders)
        eval_files, skipped = _labelled(eval_folders, classes, root, "evaluation")
        if with_train:
            train_files, skipped_train = _labelled(train_folders, classes, root, "training")
            skipped += skipped_train
        holdout = None
    else:
        folders = {n: _class_files(class_root / n, root) for n in classes}
        _require_files(folders)
        held_out = _held_out(holdout, float(config["holdout_fraction"]), root)
        evaluated = {n: _split_class(f, held_out, True) for n, f in folders.items()}
        eval_files, skipped = _labelled(evaluated, classes, root, "evaluation", False)
        if with_train:
            trained = {n: _split_class(f, held_out, False) for n, f in folders.items()}
            for name, files in trained.items():
                if not files.images and folders[name].images:
                    raise DataError(
                        f"Every image of class {name!r} ({files.folder}) is held out for "
                        "evaluation, leaving none to train on: add images to it, or split the "
                        f"folder into {root}/train/CLASS/ and {root}/val/CLASS/."
                    )
            train_files, skipped_train = _labelled(trained, classes, root, "training")
            skipped += skipped_train
    if not eval_files:
        raise DataError(
            f"Image folder {root} leaves no images for evaluation: add a val/ split or more images."
        )
    return _Folder(root, classes, train_files, eval_files, holdout, layout, skipped)


def _folder_data(config, batch_size, with_train, classes=None, holdout=HOLDOUT_BY_NAME):
    folder = _folder_files(config, with_train, classes, holdout)

    def dataset(files):
        paths = tf.constant([f for f, _ in files])
        labels = tf.constant([label for _, label in files], tf.int64)

        def decode(path, label):
            return decode_image_file(path), label

        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            decode, num_parallel_calls=_AUTOTUNE
        )

    classes = folder.classes
    train_epochs, evaluation = _pipelines(
        dataset(folder.train) if with_train else None,
        dataset(folder.eval),
        config,
        len(classes),
        batch_size,
    )
    train_examples = len(folder.train) if with_train else 0
    used = f"train: {train_examples}, " if with_train else ""
    return Data(
        train=None,
        eval=evaluation,
        num_classes=len(classes),
        train_examples=train_examples,
        eval_examples=len(folder.eval),
        description=f"image folder {folder.root} ({folder.description}; {used}eval: "
        f"{len(folder.eval)} images, {len(classes)} classes)",
        skipped_files=folder.skipped,
        train_epochs=train_epochs,
        files=((str(folder.root), None),),
        classes=tuple(classes),
        holdout=folder.holdout,
    )


# ----------------------------------------------------------------------- public


def _check_epoch_size(data, batch_size):
    if data.train_examples < batch_size:
        raise DataError(
            f"The batch size {batch_size} is larger than the {data.train_examples} training images "
            "(training drops incomplete batches): lower --batch-size."
        )
    examples = data.train_examples
    steps = examples // batch_size
    dropped = examples - steps * batch_size
    reasons = []
    if steps < MIN_STEPS_PER_EPOCH:
        reasons.append(f"an epoch has only {steps} step(s)")
    if dropped > MAX_DROPPED_FRACTION * examples:
        reasons.append(
            f"the incomplete last batch leaves out {dropped} image(s) ({dropped / examples:.0%}) "
            "each epoch"
        )
    if reasons:
        warnings.warn(
            f"Small training epochs ({examples} training images, batch size {batch_size}): "
            f"{' and '.join(reasons)}. Lower --batch-size (e.g. {_suggested_batch(examples)}) "
            "or add training images.",
            stacklevel=2,
        )
    return steps


def _suggested_batch(examples):
    """The largest power-of-two batch giving >= MIN_STEPS_PER_EPOCH steps and dropping
    at most MAX_DROPPED_FRACTION of the images (at least 1)."""
    batch = 1
    while (
        examples // (batch * 2) >= MIN_STEPS_PER_EPOCH
        and examples % (batch * 2) <= MAX_DROPPED_FRACTION * examples
    ):
        batch *= 2
    return batch


def load_data(config, batch_size, epochs=(0, 1), *, train=True, classes=None, holdout=None):
    """The pipelines for the `data` section of a config.

    Args:
        config: the `data` section (a dict).
        batch_size: the global batch size.
        epochs: (first, last): `Data.train` holds the batches of epochs `first`
            to `last - 1` in a row (`Data.steps_per_epoch` batches each).
        train: False to read only the evaluation split (`Data.train` is then None
            and the training files are neither listed nor checked).
        classes: the class names, in label order, of the run the data is read for
            (its classes.json), or None. Images are labelled by class name; data with
            another class set raises `ClassesChanged`.
        holdout: the held-out rule of an image folder without an evaluation split
            (`HOLDOUT_RULES`; the run's, stored beside its classes), default
            `HOLDOUT_BY_NAME`.

    Raises DataError (a ValueError) naming the input and the fix. Warns when an
    epoch has fewer than MIN_STEPS_PER_EPOCH steps or leaves out more than
    MAX_DROPPED_FRACTION of the training images.
    """
    if config["dataset"] == FOLDER:
        data = _folder_data(config, batch_size, train, classes, holdout or HOLDOUT_BY_NAME)
    else:
        data = _tfds_data(config, batch_size, train, classes)
    if train:
        data.steps_per_epoch = _check_epoch_size(data, batch_size)
        data.train = data.train_epochs(*epochs)
    return data


_RECORD_ERROR = re.compile(
    r"(truncated record at \d+|corrupted record at \d+|"
    r"expected to contain \d+ elements but contained only \d+)"
)


def _damaged_file(files):
    """The first TFRecord file of `files` ((path, record count) pairs) that cannot be
    read to the end or holds fewer records than its dataset info says, or None."""
    for path, expected in files:
        if ".tfrecord" not in path:
            continue
        try:
            count = int(tf.data.TFRecordDataset(path).reduce(0, lambda n, _: n + 1))
        except (tf.errors.DataLossError, tf.errors.NotFoundError):
            return path
        if expected is not None and count != expected:
            return path
    return None


@contextlib.contextmanager
def read_errors(data):
    """Turns a damaged-data error while iterating `data`'s pipelines into a DataError.

    A truncated or corrupt TFDS record file surfaces mid-epoch as a TensorFlow
    DataLossError (or a FailedPreconditionError about the element count), which
    does not say which file: this names the file and the fix. Usage:

        with read_errors(data):
            model.fit(data.train, validation_data=data.eval, ...)
    """
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.FailedPreconditionError) as error:
        found = _RECORD_ERROR.search(str(error))
        if found is None:
            raise
        damaged = _damaged_file(data.files)
        paths = [path for path, _ in data.files]
        where = f"the file {damaged}" if damaged else "a file among " + ", ".join(paths[:3])
        folder = os.path.dirname(damaged or paths[0]) if paths else "its folder"
        raise DataError(
            f"Reading {data.description} failed: {where} is truncated or corrupt "
            f"({found.group(0)}). Delete {folder} and prepare the dataset again (the embedded "
            f"{EMBEDDED} is regenerated on the next run; others with `tfds build NAME "
            "--data_dir DIR`)."
        ) from None


def first_eval_batch(config, batch_size, classes=None, holdout=None):
    """The first batch of evaluation images (unaugmented) of the `data` section `config`.

    Raises what reading the data raises (`DataError`, `OSError`, `tf.errors.OpError`)
    so that the caller can say why.
    """
    # No cache: a cached pipeline read only in part makes TensorFlow warn.
    data_config = {**config, "cache": False}
    data = load_data(data_config, batch_size, train=False, classes=classes, holdout=holdout)
    images, _ = next(iter(data.eval.take(1)))
    return images.numpy()
