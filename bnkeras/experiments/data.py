"""The experiments' data as NumPy arrays, generated locally (no network).

- MNIST-1D (Greydanus, 2020) from the `mnist1d` package (`pip install
  "bnkeras[science]"`), generated with `mnist1d.data.make_dataset` and its
  default arguments: 4000 train / 1000 test sequences of length 40, 10 classes.
- The embedded `bnkeras_shapes` set (training/shapes_dataset.py): 6000 train /
  1000 test 32x32 RGB images, 10 balanced classes, standardized per channel
  with the training statistics; its `hard` configuration (`shapes(config="hard")`):
  10000 train / 2000 test, 20 classes (10 shapes x 2 size ranges), clutter,
  lower contrast and more noise, for measurements the default set saturates.
"""

import functools
import itertools

import numpy as np

from bnkeras.experiments import ReproduceError


class Data:
    """Train and test arrays: `x_train` (float32), `y_train` (int32), `x_test`, `y_test`."""

    def __init__(self, x_train, y_train, x_test, y_test):
        self.x_train = np.asarray(x_train, np.float32)
        self.y_train = np.asarray(y_train, np.int32)
        self.x_test = np.asarray(x_test, np.float32)
        self.y_test = np.asarray(y_test, np.int32)
        self.num_classes = int(max(self.y_train.max(), self.y_test.max())) + 1

    def subset(self, train=None, test=None):
        """The first `train` / `test` examples (all when None)."""
        return Data(
            self.x_train[:train], self.y_train[:train], self.x_test[:test], self.y_test[:test]
        )


@functools.lru_cache(maxsize=1)
def mnist1d():
    """MNIST-1D with the package's default arguments; inputs have shape (40, 1)."""
    try:
        from mnist1d.data import make_dataset
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "mnist1d":
            raise
        raise ReproduceError(
            "This experiment needs MNIST-1D: install the science extra with "
            '`pip install "bnkeras[science]"` (or `pip install mnist1d`). '
            "Received: missing module 'mnist1d'"
        ) from None
    # make_dataset() generates the data; get_dataset() would download it instead.
    data = make_dataset()
    return Data(data["x"][..., None], data["y"], data["x_test"][..., None], data["y_test"])


def _shapes_split(split, count, config):
    from bnkeras.training import shapes_dataset

    generated = shapes_dataset.generate(split, config)
    examples = [example for _, example in itertools.islice(generated, count)]
    images = np.stack([example["image"] for example in examples]).astype(np.float32) / 255.0
    labels = np.array([example["label"] for example in examples], np.int32)
    return images, labels


@functools.lru_cache(maxsize=2)
def shapes(train=None, test=None, config="default"):
    """The first `train` / `test` examples of bnkeras_shapes (all when None), standardized.

    The generator draws examples one after another from a fixed seed, so a prefix
    is the same on every machine. `config` is the generator's configuration
    ("default" or "hard"; training/shapes_dataset.py).
    """
    x_train, y_train = _shapes_split("train", train, config)
    x_test, y_test = _shapes_split("test", test, config)
    mean = x_train.mean(axis=(0, 1, 2), dtype=np.float64)
    std = x_train.std(axis=(0, 1, 2), dtype=np.float64)
    return Data((x_train - mean) / std, y_train, (x_test - mean) / std, y_test)


def describe_shapes_vgg(s):
    """Setup text of the bnkeras_shapes experiments: data sizes and the VGG-like CNN's widths."""
    if s.get("data") == "hard":
        return (
            f"bnkeras_shapes, hard configuration ({s['train'] or 10000} train / "
            f"{s['test'] or 2000} test, 32x32 RGB, 20 classes, clutter, low contrast), "
            f"VGG-like CNN {'/'.join(map(str, s['widths']))} (2 conv per stage)"
        )
    return (
        f"bnkeras_shapes ({s['train'] or 6000} train / {s['test'] or 1000} test, 32x32 RGB), "
        f"VGG-like CNN {'/'.join(map(str, s['widths']))} (2 conv per stage)"
    )
