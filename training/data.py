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
  either under `train/` and `val/` (or `validation/`), or directly, in which case a
  deterministic `data.holdout_fraction` of each class is held out for evaluation.
  Files that cannot be decoded as images are skipped and counted (a warning names
  the first few); they never stop a run.
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tensorflow as tf

from bnkeras.errors import Error

logger = logging.getLogger(__name__)

EMBEDDED = "bnkeras_shapes"
FOLDER = "folder"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
_AUTOTUNE = tf.data.AUTOTUNE
# Epoch e of data.seed s draws its shuffle and augmentation from the stream
# s * EPOCH_SEED_STRIDE + 2 * e (crop) and + 1 (flip): distinct for every (s, e) with
# e < EPOCH_SEED_STRIDE / 2.
EPOCH_SEED_STRIDE = 1_000_003
SHUFFLE_GRAPH_SEED = 1  # any fixed nonzero value
# Threads that check image files in parallel (I/O bound, so more than the cores).
IMAGE_CHECK_THREADS = 16
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
    when reading fails.
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
        # tensor op seed with 0 in Python and fails).
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
    from tensorflow_datasets.core.utils import tqdm_utils

    python_state, numpy_state = random.getstate(), np.random.get_state()
    bars = getattr(tqdm_utils, "_active", True)
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
        manual_dir = Path(builder._data_dir_root) / "downloads" / "manual"
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


def _tfds_data(config, batch_size, with_train):
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
    )


# ---------------------------------------------------------------- image folders


def _is_image(path):
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except Exception:
        return False


def _list_images(root, classes):
    files = []
    for label, name in enumerate(classes):
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
                files.append((str(path), label))
    return files


def _class_dirs(root):
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _folder_files(config):
    """(root, classes, train files, eval files) of an image folder, as (path, label) lists."""
    if not config.get("data_dir"):
        raise DataError(
            f"dataset {FOLDER!r} needs --data-dir: the image folder (one subfolder per class)."
        )
    root = Path(config["data_dir"])
    if not root.is_dir():
        raise DataError(f"--data-dir {root} does not exist or is not a directory.")
    split_dirs = {s: root / s for s in ("train", "val", "validation") if (root / s).is_dir()}
    if "train" in split_dirs and ("val" in split_dirs or "validation" in split_dirs):
        train_root = split_dirs["train"]
        eval_root = split_dirs.get("val", split_dirs.get("validation"))
        classes = _class_dirs(train_root)
        train_files, eval_files = (
            _list_images(train_root, classes),
            _list_images(eval_root, classes),
        )
    else:
        classes = _class_dirs(root)
        files = _list_images(root, classes)
        fraction = float(config["holdout_fraction"])

        def held_out(path):
            digest = hashlib.sha1(os.path.relpath(path, root).encode()).digest()
            return int.from_bytes(digest[:4], "big") / 2**32 < fraction

        train_files = [f for f in files if not held_out(f[0])]
        eval_files = [f for f in files if held_out(f[0])]
    if len(classes) < 2:
        raise DataError(
            f"Image folder {root} has {len(classes)} class subfolder(s) "
            f"({', '.join(classes) or 'none'}); a classifier needs at least 2."
        )
    if not train_files:
        raise DataError(
            f"Image folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))})."
        )
    if not eval_files:
        raise DataError(
            f"Image folder {root} leaves no images for evaluation: add a val/ split or more images."
        )
    return root, classes, train_files, eval_files


def _decodable(files, root, what):
    """The decodable (path, label) pairs of `files`; warns about the others."""
    with ThreadPoolExecutor(IMAGE_CHECK_THREADS) as pool:
        ok = list(pool.map(_is_image, [f for f, _ in files]))
    bad = [f for (f, _), good in zip(files, ok, strict=True) if not good]
    kept = [f for f, good in zip(files, ok, strict=True) if good]
    if bad and not kept:
        raise DataError(
            f"None of the {len(files)} {what} images in {root} can be decoded "
            f"(e.g. {', '.join(bad[:3])}): check the files (JPEG, PNG, BMP or GIF)."
        )
    if bad:
        warnings.warn(
            f"Skipped {len(bad)} undecodable {what} image file(s) in {root}, e.g. "
            + ", ".join(bad[:3]),
            stacklevel=2,
        )
    return kept, len(bad)


def _folder_data(config, batch_size, with_train):
    root, classes, train_files, eval_files = _folder_files(config)
    # Only the files this call reads are checked (evaluation does not look at train/).
    eval_files, skipped = _decodable(eval_files, root, "evaluation")
    if with_train:
        train_files, skipped_train = _decodable(train_files, root, "training")
        skipped += skipped_train

    def dataset(files):
        paths = tf.constant([f for f, _ in files])
        labels = tf.constant([label for _, label in files], tf.int64)

        def decode(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            return image, label

        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            decode, num_parallel_calls=_AUTOTUNE
        )

    train_epochs, evaluation = _pipelines(
        dataset(train_files) if with_train else None,
        dataset(eval_files),
        config,
        len(classes),
        batch_size,
    )
    train_examples = len(train_files) if with_train else 0
    used = f"train: {train_examples}, " if with_train else ""
    return Data(
        train=None,
        eval=evaluation,
        num_classes=len(classes),
        train_examples=train_examples,
        eval_examples=len(eval_files),
        description=f"image folder {root} ({used}eval: {len(eval_files)} images, "
        f"{len(classes)} classes)",
        skipped_files=skipped,
        train_epochs=train_epochs,
        files=((str(root), None),),
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


def load_data(config, batch_size, epochs=(0, 1), *, train=True):
    """The pipelines for the `data` section of a config.

    Args:
        config: the `data` section (a dict).
        batch_size: the global batch size.
        epochs: (first, last): `Data.train` holds the batches of epochs `first`
            to `last - 1` in a row (`Data.steps_per_epoch` batches each).
        train: False to read only the evaluation split (`Data.train` is then None
            and the training files are neither listed nor checked).

    Raises DataError (a ValueError) naming the input and the fix. Warns when an
    epoch has fewer than MIN_STEPS_PER_EPOCH steps or leaves out more than
    MAX_DROPPED_FRACTION of the training images.
    """
    if config["dataset"] == FOLDER:
        data = _folder_data(config, batch_size, train)
    else:
        data = _tfds_data(config, batch_size, train)
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


def verification_batch(workdir, batch_size):
    """A batch of evaluation images for the run in `workdir`.

    Raises what reading the run's config or data raises (`ConfigError`/`DataError`,
    `OSError`, `tf.errors.OpError`) so that the caller can say why.
    """
    from bnkeras.training.config import load_run_config

    config = load_run_config(workdir)
    # No cache: a cached pipeline read only in part makes TensorFlow warn.
    data_config = {**config["data"], "cache": False}
    data = load_data(data_config, batch_size, train=False)
    images, _ = next(iter(data.eval.take(1)))
    return images.numpy()
