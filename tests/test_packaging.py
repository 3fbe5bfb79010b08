"""Installing bnkeras must never replace a user's TensorFlow build."""

import importlib.metadata
import subprocess
import sys

from packaging.requirements import Requirement


def _requirements():
    return [Requirement(line) for line in importlib.metadata.requires("bnkeras")]


def test_tensorflow_comes_only_from_extras():
    tensorflow = [
        r for r in _requirements() if r.name.startswith("tensorflow") and "datasets" not in r.name
    ]
    assert {r.name for r in tensorflow} == {"tensorflow", "tensorflow-cpu"}
    for requirement in tensorflow:
        assert requirement.marker is not None and "extra" in str(requirement.marker), requirement


def test_keras_is_capped_below_the_next_minor():
    (keras,) = [r for r in _requirements() if r.name == "keras" and r.marker is None]
    assert not keras.specifier.contains("3.16.0")
    assert keras.specifier.contains(importlib.metadata.version("keras"))


def test_missing_tensorflow_names_the_extras():
    code = "import sys; sys.modules['tensorflow'] = None; import bnkeras"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "bnkeras[cpu]" in result.stderr and "bnkeras[gpu]" in result.stderr
