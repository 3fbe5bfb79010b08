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

import dataclasses
import functools
import hashlib
import os
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import tensorflow as tf

EMBEDDED = "bnkeras_shapes"
FOLDER = "folder"
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
_AUTOTUNE = tf.data.AUTOTUNE


class DataError(ValueError):
    """A dataset that cannot be used; the message names the input and the fix."""


@dataclasses.dataclass
class Data:
    train: tf.data.Dataset
    eval: tf.data.Dataset
    num_classes: int
    train_examples: int
    eval_examples: int
    description: str
    skipped_files: int = 0
    steps_per_epoch: int = 0


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
    resumed run therefore sees exactly the batches an uninterrupted run would.
    """
    size, min_scale = int(config["image_size"]), float(config["min_scale"])
    normalize = _normalizer(config)
    base_seed = int(config["seed"])

    def epoch_batches(epoch):
        seed = base_seed * 1_000_003 + 2 * epoch

        def augment(index, example):
            image, label = example
            crop_seed = tf.stack([tf.constant(seed, tf.int64), index])
            image = _random_resized_crop(tf.cast(image, tf.float32), size, min_scale, crop_seed)
            image = tf.image.stateless_random_flip_left_right(
                image, tf.stack([tf.constant(seed + 1, tf.int64), index])
            )
            return normalize(image), tf.one_hot(label, num_classes)

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

    # One dataset per epoch, concatenated: the shuffle seed must be a Python int.
    first, last = epochs
    return functools.reduce(
        lambda a, b: a.concatenate(b), [epoch_batches(e) for e in range(first, last)]
    ).prefetch(_AUTOTUNE)


def _eval_pipeline(examples, config, num_classes, batch_size):
    size, crop_fraction = int(config["image_size"]), float(config["crop_fraction"])
    normalize = _normalizer(config)

    def preprocess(image, label):
        image = _centre_crop(tf.cast(image, tf.float32), size, crop_fraction)
        return normalize(image), tf.one_hot(label, num_classes)

    return (
        examples.map(preprocess, num_parallel_calls=_AUTOTUNE).batch(batch_size).prefetch(_AUTOTUNE)
    )


def _pipelines(train, evaluation, config, num_classes, batch_size, epochs):
    if config["cache"]:
        train, evaluation = train.cache(), evaluation.cache()
    return (
        _train_pipeline(train, config, num_classes, batch_size, epochs),
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
    try:
        return tfds.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError and config errors
        raise DataError(
            f"Unknown dataset {name!r}: give a TFDS image-classification name (e.g. cifar10, "
            f"imagenette, imagenet2012), {EMBEDDED!r} (embedded, offline), or {FOLDER!r} with "
            f"--data-dir pointing at an image folder. ({type(error).__name__}: "
            f"{str(error).splitlines()[0]})"
        ) from None


def _prepare(builder, name, data_dir):
    info_file = Path(builder.data_dir) / "dataset_info.json"
    if info_file.exists():
        return
    if name == EMBEDDED:
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
    builder.download_and_prepare()


def _tfds_data(config, batch_size, epochs):
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
    for split in (train_split, eval_split):
        if split is None or split.split("[")[0] not in splits:
            raise DataError(f"Dataset {name!r} has no split {split!r}; it has {', '.join(splits)}.")
    train = builder.as_dataset(split=train_split, as_supervised=True, shuffle_files=False)
    evaluation = builder.as_dataset(split=eval_split, as_supervised=True, shuffle_files=False)
    train, evaluation = _pipelines(train, evaluation, config, num_classes, batch_size, epochs)
    return Data(
        train=train,
        eval=evaluation,
        num_classes=num_classes,
        train_examples=splits[train_split].num_examples,
        eval_examples=splits[eval_split].num_examples,
        description=f"{name} ({train_split}: {splits[train_split].num_examples}, "
        f"{eval_split}: {splits[eval_split].num_examples} images, {num_classes} classes)",
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


def _folder_data(config, batch_size, log, epochs):
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
        if not 0.0 < fraction < 1.0:
            raise DataError(
                f"An image folder without train/ and val/ needs 0 < data.holdout_fraction < 1. "
                f"Received: {fraction}"
            )

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
    with ThreadPoolExecutor(16) as pool:
        train_ok = list(pool.map(_is_image, [f for f, _ in train_files]))
        eval_ok = list(pool.map(_is_image, [f for f, _ in eval_files]))
    bad = [
        f for (f, _), ok in zip(train_files + eval_files, train_ok + eval_ok, strict=True) if not ok
    ]
    if bad:
        log(
            f"warning: skipped {len(bad)} undecodable image file(s) in {root}, e.g. "
            + ", ".join(bad[:3])
        )
    train_files = [f for f, ok in zip(train_files, train_ok, strict=True) if ok]
    eval_files = [f for f, ok in zip(eval_files, eval_ok, strict=True) if ok]

    def dataset(files):
        paths = tf.constant([f for f, _ in files])
        labels = tf.constant([label for _, label in files], tf.int64)

        def decode(path, label):
            image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
            return image, label

        return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
            decode, num_parallel_calls=_AUTOTUNE
        )

    train, evaluation = _pipelines(
        dataset(train_files), dataset(eval_files), config, len(classes), batch_size, epochs
    )
    return Data(
        train=train,
        eval=evaluation,
        num_classes=len(classes),
        train_examples=len(train_files),
        eval_examples=len(eval_files),
        description=f"image folder {root} (train: {len(train_files)}, eval: {len(eval_files)} images, "
        f"{len(classes)} classes)",
        skipped_files=len(bad),
    )


# ----------------------------------------------------------------------- public


def load_data(config, batch_size, log=print, epochs=(0, 1)):
    """The pipelines for the `data` section of a config.

    `Data.train` holds the batches of epochs `epochs[0]` to `epochs[1] - 1` in a
    row (`Data.steps_per_epoch` batches each); `Data.eval` is one pass over the
    evaluation split.
    """
    if config["dataset"] == FOLDER:
        data = _folder_data(config, batch_size, log, epochs)
    else:
        data = _tfds_data(config, batch_size, epochs)
    if data.train_examples < batch_size:
        raise DataError(
            f"The batch size {batch_size} is larger than the {data.train_examples} training images "
            "(training drops incomplete batches): lower --batch-size."
        )
    data.steps_per_epoch = data.train_examples // batch_size
    return data


def verification_batch(workdir, batch_size):
    """A batch of evaluation images for the run in `workdir`.

    Raises what reading the run's config or data raises (`ConfigError`/`DataError`,
    `OSError`, `tf.errors.OpError`) so that the caller can say why.
    """
    from bnkeras.training.config import load_run_config

    config = load_run_config(workdir)
    data = load_data(config["data"], batch_size, log=lambda *_: None)
    images, _ = next(iter(data.eval))
    return images.numpy()
