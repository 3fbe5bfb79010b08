"""The layer suite on Keras's PyTorch backend, where `torch` is installed.

PyTorch from the package index pulls large CUDA wheels, so CI does not install it; this
test then skips, saying so. Where torch is installed it runs tests/layers under
KERAS_BACKEND=torch in a process of its own (a process has one backend).
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="PyTorch is not installed (pip install torch to run the layer suite on Keras's "
    "torch backend); CI runs the layers on TensorFlow and JAX",
)
def test_the_layer_suite_passes_on_torch():
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "0", "-x", "tests/layers"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert result.returncode == 0, result.stdout[-4000:]
