"""Installing bnkeras must never replace a user's TensorFlow build; its public names."""

import importlib.metadata
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_the_package_names_every_public_layer():
    """`bnkeras` lists its layers without importing TensorFlow: the names and objects
    of `bnkeras.layers.__all__`, no more and no fewer."""
    import bnkeras
    import bnkeras.layers

    from_layers = {name for name, module in bnkeras._PUBLIC.items() if module == "bnkeras.layers"}
    assert from_layers == set(bnkeras.layers.__all__)
    assert set(bnkeras.layers.__all__) <= set(bnkeras.__all__) <= set(dir(bnkeras))
    for name in bnkeras.layers.__all__:
        assert getattr(bnkeras, name) is getattr(bnkeras.layers, name), name
    for name in bnkeras.__all__:
        assert getattr(bnkeras, name) is not None, name


def test_the_jax_extra_brings_jax_and_no_tensorflow():
    jax = [
        r
        for r in _requirements()
        if r.marker is not None and "extra" in str(r.marker) and r.marker.evaluate({"extra": "jax"})
    ]
    assert {r.name for r in jax} == {"jax"}
    assert "cpu" in jax[0].extras


def _on_jax(code):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )


needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="needs jax (the jax extra)"
)


@needs_jax
def test_bnkeras_on_jax_imports_no_tensorflow():
    """The layers, precise BN, the converter and the fold import no TensorFlow on JAX
    (TensorFlow is installed here: only an import would bring it in)."""
    code = (
        "import sys, bnkeras, bnkeras.export, bnkeras.training; "
        "layers = [bnkeras.BatchNormalization(), bnkeras.BatchRenormalization(), "
        "bnkeras.GhostBatchNormalization()]; "
        "bnkeras.recalibrate_batchnorm, bnkeras.convert_batchnorm, "
        "bnkeras.export.fold_batchnorm, bnkeras.export.verify; "
        "import keras; assert keras.backend.backend() == 'jax'; "
        "print('tensorflow' in sys.modules)"
    )
    result = _on_jax(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"


@needs_jax
@pytest.mark.parametrize(
    "feature",
    ["bnkeras.training.train_and_evaluate", "bnkeras.export.export_model"],
)
def test_tensorflow_features_on_jax_name_the_backend_and_the_extra(feature):
    module, name = feature.rsplit(".", 1)
    result = _on_jax(f"import {module}; {module}.{name}")
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    # a bnkeras.Error (the command's one-line exit 2) that is still a RuntimeError
    assert message.startswith("bnkeras._backend.BackendError: "), result.stderr[-2000:]
    assert (
        "'jax'" in message and "bnkeras[cpu]" in message and "KERAS_BACKEND=tensorflow" in message
    )


def test_the_backend_error_is_a_user_error_and_a_runtime_error():
    import bnkeras
    from bnkeras._backend import BackendError

    assert issubclass(BackendError, bnkeras.Error) and issubclass(BackendError, RuntimeError)


@needs_jax
def test_the_backends_page_example_runs_on_jax_without_tensorflow(tmp_path):
    """docs/backends.md's renorm example, as written, in a process where TensorFlow
    cannot be imported (as after `pip install "bnkeras[jax]"`)."""
    page = (Path(__file__).parents[1] / "docs" / "backends.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", page, re.S)
    code = "import sys; sys.modules['tensorflow'] = None\n" + example
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "renorm.keras").is_file()
