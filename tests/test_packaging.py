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
    code = (
        "import sys; sys.modules['tensorflow'] = None; import bnkeras; bnkeras.BatchNormalization"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "bnkeras[cpu]" in result.stderr and "bnkeras[gpu]" in result.stderr


def test_the_package_names_every_public_layer():
    """`bnkeras` lists its layers without importing TensorFlow: the names and objects
    of `bnkeras.layers.__all__`, no more and no fewer."""
    import importlib
    import inspect

    import bnkeras
    import bnkeras.layers

    from_layers = {name for name, module in bnkeras._PUBLIC.items() if module == "bnkeras.layers"}
    assert from_layers == set(bnkeras.layers.__all__)
    assert set(bnkeras.layers.__all__) <= set(bnkeras.__all__) <= set(dir(bnkeras))
    for name in bnkeras.layers.__all__:
        assert getattr(bnkeras, name) is getattr(bnkeras.layers, name), name
    assert bnkeras.Error is importlib.import_module("bnkeras.errors").Error
    for name in set(bnkeras.__all__) - {"__version__", "Error"}:
        module = importlib.import_module(bnkeras._PUBLIC[name])
        obj = getattr(bnkeras, name)
        assert obj is getattr(module, name), name  # the object its module defines
        assert inspect.isclass(obj) or inspect.isfunction(obj), (name, obj)
        assert obj.__module__.startswith("bnkeras."), (name, obj.__module__)
    assert bnkeras.__version__ == importlib.metadata.version("bnkeras")


def test_no_test_hooks_in_the_product():
    """Faults are injected from the tests (tests/_faults.py), not through hooks that
    the product reads from the environment (design rule 17)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    sources = [p for d in ("bnkeras", "training", "export") for p in (root / d).rglob("*.py")]
    assert sources
    hooked = [str(p.relative_to(root)) for p in sources if "BNKERAS_TEST" in p.read_text()]
    assert hooked == []


def _unannotated(function):
    import inspect

    signature = inspect.signature(function)
    missing = [
        name
        for name, parameter in signature.parameters.items()
        if name not in ("self", "cls") and parameter.annotation is inspect.Parameter.empty
    ]
    if function.__name__ != "__init__" and signature.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_the_public_api_is_typed():
    """Every public function, and every public method of a public class (inherited from
    a bnkeras base included), carries annotations; the package ships `py.typed`."""
    import configparser
    import importlib
    import inspect
    from pathlib import Path

    unannotated = {}
    for package in ("bnkeras", "bnkeras.export", "bnkeras.training"):
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            functions = {f"{package}.{name}": obj} if inspect.isfunction(obj) else {}
            if inspect.isclass(obj):
                for cls in obj.__mro__:
                    if not cls.__module__.startswith("bnkeras"):
                        continue
                    for attr, value in vars(cls).items():
                        if attr.startswith("_") and attr not in ("__init__", "__call__"):
                            continue
                        value = value.fget if isinstance(value, property) else value
                        value = getattr(value, "__func__", value)
                        if inspect.isfunction(value):
                            functions.setdefault(f"{package}.{name}.{attr}", value)
            for qualified, function in functions.items():
                if _unannotated(function):
                    unannotated[qualified] = _unannotated(function)
    assert unannotated == {}
    root = Path(__file__).resolve().parent.parent
    assert (root / "bnkeras" / "py.typed").is_file()
    setup = configparser.ConfigParser()
    setup.read(root / "setup.cfg")
    assert "py.typed" in setup["options.package_data"]["bnkeras"].split()


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
