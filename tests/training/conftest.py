import json
import shutil

import pytest

from bnkeras.training.config import build_config
from tests.conftest import built_once


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory):
    """The embedded dataset, generated once per test session (about 2 s)."""
    import tensorflow_datasets as tfds

    import bnkeras.training.shapes_dataset  # noqa: F401

    with built_once(tmp_path_factory, "tfds") as (data_dir, build):
        if build:
            tfds.builder("bnkeras_shapes", data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


TINY = [
    "model.name=resnet8",
    "model.width=4",
    "data.image_size=16",
    "data.train_split=train[:256]",
    "data.eval_split=test[:128]",
    "data.shuffle_buffer=256",
    "train.batch_size=32",
    "train.epochs=1",
    "train.warmup_epochs=0",
]
# Two epochs: a run with a checkpoint to resume from and a log of two rows.
TWO_EPOCHS = [*TINY, "train.epochs=2"]


@pytest.fixture
def tiny_config(shapes_dir):
    """A factory of tiny runs on the embedded data (a few seconds an epoch)."""

    def make(*overrides, **flat):
        return build_config("demo", [*TINY, *overrides], {"data.data_dir": shapes_dir, **flat})

    return make


@pytest.fixture(scope="session")
def one_epoch_run(shapes_dir, tmp_path_factory):
    """(work directory, metrics) of the finished default tiny run, trained once per
    session; tests that change it take a copy with `one_epoch_copy`."""
    from bnkeras.training.trainer import train_and_evaluate

    with built_once(tmp_path_factory, "one_epoch") as (folder, build):
        workdir, returned = folder / "run", folder / "returned.json"
        if build:
            config = build_config("demo", TINY, {"data.data_dir": shapes_dir})
            returned.write_text(json.dumps(train_and_evaluate(config, workdir, progress=0)))
    return workdir, json.loads(returned.read_text())


@pytest.fixture(scope="session")
def finished_run(shapes_dir, one_epoch_run, tmp_path_factory):
    """A finished `TWO_EPOCHS` run (the session's one-epoch run, resumed for a
    second epoch); tests that change it take a copy.

    Its first checkpoint is kept beside it as `epoch_0001.keras` (a run keeps only
    its last and best checkpoints)."""
    from bnkeras.training.trainer import train_and_evaluate

    with built_once(tmp_path_factory, "finished") as (folder, build):
        workdir = folder / "run"
        if build:
            shutil.copytree(one_epoch_run[0], workdir)
            shutil.copy(workdir / "checkpoints" / "epoch_0001.keras", folder)
            config = build_config("demo", TWO_EPOCHS, {"data.data_dir": shapes_dir})
            train_and_evaluate(config, workdir, progress=0)
    return workdir


@pytest.fixture
def one_epoch_copy(one_epoch_run, tmp_path):
    """A private copy of the finished default tiny run: `tmp_path / "run"`."""
    target = tmp_path / "run"
    shutil.copytree(one_epoch_run[0], target)
    return target
