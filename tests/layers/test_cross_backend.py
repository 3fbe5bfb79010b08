"""A `.keras` file moves between backends: saved under TensorFlow it loads under JAX
and under PyTorch, and back, with the same inference outputs and, after one training
step on the same batch, the same weights and moving statistics.

A process has one Keras backend: the TensorFlow side runs in the test's process,
the JAX side in a subprocess (tests/layers/cross_backend_side.py); the test
compares what they write. It runs once, from the TensorFlow process.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import harness
from tests.layers import cross_backend_side

if not harness.ON_TENSORFLOW:
    pytest.skip("runs once, from the TensorFlow process", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]


def _run(backend, mode, folder):
    """One side: in this (TensorFlow) process, or in a subprocess for another backend."""
    if backend == harness.BACKEND:
        cross_backend_side.side(mode, folder)
    else:
        env = {**os.environ, "KERAS_BACKEND": backend}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        result = subprocess.run(
            [sys.executable, "-m", "tests.layers.cross_backend_side", mode, str(folder)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
    with open(folder / f"{mode}.json") as f:
        info = json.load(f)
    assert info["backend"] == backend
    return info, dict(np.load(folder / f"{mode}.npz"))


def assert_same_model(saved, loaded):
    """Equal saved weights, inference outputs and, after the training step, equal
    weights (moving statistics, renorm's step and statistics, trained weights)."""
    (save_info, a), (load_info, b) = saved, loaded
    assert save_info["paths"] == load_info["paths"]
    for i, path in enumerate(save_info["paths"]):
        np.testing.assert_array_equal(a[f"saved/{i}"], b[f"saved/{i}"], err_msg=path)
    np.testing.assert_allclose(a["inference"], b["inference"], rtol=1e-5, atol=1e-5)
    for i, path in enumerate(save_info["paths"]):
        np.testing.assert_allclose(
            a[f"trained/{i}"], b[f"trained/{i}"], rtol=1e-5, atol=1e-5, err_msg=path
        )
    np.testing.assert_allclose(a["after"], b["after"], rtol=1e-5, atol=1e-5)


def _installed(backend, reason):
    return pytest.mark.skipif(importlib.util.find_spec(backend) is None, reason=reason)


NEEDS_JAX = _installed("jax", "needs jax (the jax extra)")
# CI does not install torch (the package index's wheels bring CUDA, GBs): this skips there.
NEEDS_TORCH = _installed(
    "torch", "needs PyTorch (pip install torch; CI does not install it: its wheels bring CUDA)"
)


@pytest.mark.parametrize(
    "source,target",
    [
        pytest.param("tensorflow", "jax", marks=NEEDS_JAX),
        pytest.param("jax", "tensorflow", marks=NEEDS_JAX),
        pytest.param("tensorflow", "torch", marks=NEEDS_TORCH),
        pytest.param("torch", "tensorflow", marks=NEEDS_TORCH),
    ],
)
def test_keras_file_moves_between_backends(source, target, tmp_path, rng):
    x = harness.random_batch(rng, (10, 4, 4, 3))
    np.savez(tmp_path / "data.npz", x=x, y=rng.normal(size=(10, 2)).astype("float32"))
    saved = _run(source, "save", tmp_path)
    loaded = _run(target, "load", tmp_path)
    # The weights the file holds, by name: every layer's, renorm's int step included.
    paths = saved[0]["paths"]
    for name in ("moving_mean", "moving_variance", "renorm_mean", "renorm_stddev"):
        assert any(path.endswith(name) for path in paths), name
    assert "renorm/renorm_step" in paths
    assert_same_model(saved, loaded)
    if source == "jax":  # bnkeras's layers and a train step import no TensorFlow on JAX
        assert not saved[0]["tensorflow_imported"]
