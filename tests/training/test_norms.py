import logging

import keras
import numpy as np
import pytest

import bnkeras
from bnkeras.layers.renorm_schedules import WARMUP, warmup
from bnkeras.training.config import DEFAULTS, ConfigError, build_config
from bnkeras.training.models import norm_from_config
from bnkeras.training.models.norms import get_norm
from bnkeras.training.trainer import train_and_evaluate

QUIET = {"progress": 0}
LOGGER = "bnkeras.norms"


def test_renorm_warmup_over_the_run_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger=LOGGER):
        layer = get_norm("renorm", total_steps=744)()
    assert layer.rmax == warmup("rmax", 744) and layer.dmax == warmup("dmax", 744)
    assert (
        "batch renorm clipping (warm-up over a run of 744 steps): rmax 1 until step 29, then linear to 3 "
        "at step 229; dmax 0 until step 29, then linear to 5 at step 143"
    ) in caplog.text
    # Explicit clips take no run length; without one the paper's absolute steps.
    assert get_norm("renorm", rmax=2.0, dmax=1.0, total_steps=744)().rmax == 2.0
    assert get_norm("renorm")().rmax == WARMUP["rmax"]


def test_config_steps_win_over_the_run():
    norm = {**DEFAULTS["norm"], "name": "renorm"}
    assert norm_from_config(norm, total_steps=744)().total_steps == 744
    assert norm_from_config({**norm, "total_steps": 130_000}, 744)().rmax == WARMUP["rmax"]
    # The trainer's renorm corrects the start-up bias of its statistics unless told not to.
    assert norm_from_config(norm)().renorm_bias_correction
    assert not norm_from_config({**norm, "renorm_bias_correction": False})().renorm_bias_correction
    with pytest.raises(ConfigError, match=r"norm.total_steps.*Received: norm.total_steps=0"):
        build_config("demo", ["norm.total_steps=0"])


def _renorms(workdir):
    model = keras.saving.load_model(workdir / "model.keras")
    norms = [layer for layer in model.layers if isinstance(layer, bnkeras.BatchRenormalization)]
    assert norms
    return norms


def test_trainer_lays_the_renorm_warmup_over_the_run_and_a_resume_keeps_its_step(
    tiny_config, tmp_path, caplog
):
    # 256 images / batch 32 = 8 steps: the paper's absolute warm-up would be plain BN.
    workdir = tmp_path / "run"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        metrics = train_and_evaluate(tiny_config("norm.name=renorm"), workdir, **QUIET)
    assert np.isfinite(metrics["loss"])
    assert "a run of 8 steps" in caplog.text
    for layer in _renorms(workdir):
        assert layer.total_steps == 8 and int(layer.renorm_step) == 8
        assert float(layer._clip_value(layer.rmax, "float32")) == 3.0
        assert float(layer._clip_value(layer.dmax, "float32")) == 5.0
    # Resumed for a second epoch, the layers count on from their saved step.
    train_and_evaluate(tiny_config("norm.name=renorm", "train.epochs=2"), workdir, **QUIET)
    assert {int(layer.renorm_step) for layer in _renorms(workdir)} == {2 * 256 // 32}
