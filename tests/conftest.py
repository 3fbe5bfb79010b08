"""Test setup: split the CPU into two logical devices before TensorFlow starts, so
that MirroredStrategy and cross-replica statistics can be tested on one machine.
The backend is TensorFlow unless KERAS_BACKEND says otherwise."""

import contextlib
import fcntl
import gc
import hashlib
import os
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# OpenVINO's converter sends usage telemetry unless in CI (openvino_telemetry's
# `disable_in_ci`, on for `ov.convert_model`): each event forks the test process and
# tries Google Analytics (offline here): ~2.6 s of CPU a ResNet50 conversion; it writes
# ~/intel/. docs/export.md tells users how to opt out (opt_in_out --opt_out).
os.environ.setdefault("CI", "true")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] != "tensorflow":
    # Other backends run as after `pip install "bnkeras[jax]"`, without TensorFlow:
    # importing it fails (Keras's own optional uses of it, e.g. in saving, are then
    # skipped as where it is not installed).
    sys.modules["tensorflow"] = None
    # Two CPU devices for keras.distribution.DataParallel (as TensorFlow's CPU is
    # split below). The JAX run is mostly XLA compiling hundreds of tiny eager
    # computations: its cheapest code generation takes ~25% less CPU (no fast-math
    # either way, so the same values).
    os.environ.setdefault(
        "XLA_FLAGS",
        "--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0",
    )
else:
    # TensorFlow's jit_compile=True tests (and the commands they start) compile tiny
    # models: the same cheapest code generation takes ~20% less of their CPU.
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which registers "dsession"
def pytest_configure(config):
    """Splits the CPU in every process that runs tests. pytest-xdist's controller
    (`-n 2`) only hands tests to its workers: it skips TensorFlow's import, so that
    the workers start ~4 s sooner. Other backends (`KERAS_BACKEND=jax` runs the
    layer tests in a process of its own) do not need TensorFlow at all."""
    if config.pluginmanager.hasplugin("dsession"):
        return
    if os.environ["KERAS_BACKEND"] != "tensorflow":
        return
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
    )


def pytest_collection_finish(session):
    """Freezes what exists once the tests are collected (TensorFlow, Keras and the
    converters, ~350,000 objects) out of the garbage collector's scans: a full
    collection in a test then scans only what the tests made (ms instead of ~0.2 s)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _reset_keras_state():
    import keras

    keras.config.set_dtype_policy("float32")
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        keras.utils.set_random_seed(0)
    else:
        # keras.utils.set_random_seed imports TensorFlow whenever it is installed
        # (~10 s per process); Keras's own initializers are then unseeded.
        random.seed(0)
        np.random.seed(0)
    yield
    keras.config.set_dtype_policy("float32")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# The longest tests (end-to-end runs, real processes importing TensorFlow, whole
# exports), longest first, from `pytest -n 2 --durations=120` of 2026-12-06: node-ID
# prefixes. Run first, they overlap the other worker's short tests instead of leaving
# one worker alone at the end. A renamed test just runs in its place.
HEAVY_FIRST = (
    "tests/test_end_to_end.py",
    "tests/training/test_external.py::test_keras_application_trains_resumes_and_exports",
    "tests/training/test_distributed.py::test_mirrored_training_with_sync_bn",
    "tests/export/test_export_cli.py::test_mobilenet_v2_through_all_formats",
    "tests/reliability/test_train_faults.py::test_a_second_train_on_a_locked_workdir",
    "tests/export/test_export_cli.py::test_converter_noise_goes_to_the_export_log",
    "tests/training/test_distributed.py::test_multiworker_training",
    "tests/training/test_trainer.py::test_resume_after_kill_matches_an_uninterrupted_run",
    "tests/training/test_trainer.py::test_xla_and_bfloat16",
    "tests/experiments/test_reproduce.py::test_quick_run_writes_documented_files",
    "tests/reliability/test_signal_faults.py::test_sigterm_and_sighup_stop_train_like_ctrl_c",
    "tests/training/test_cli_run.py::test_verbose_and_a_users_log_level",
    "tests/training/test_norms.py::test_trainer_lays_the_renorm_warmup_over_the_run",
    "tests/reliability/test_signal_faults.py",
    "tests/test_cli.py::test_one_import_behaviour_however_the_process_started",
    "tests/training/test_distributed.py",
    "tests/reliability/test_train_faults.py::test_ema_is_validated_saved",
    "tests/training/test_external.py",
    "tests/test_packaging.py::test_the_backends_page_example_runs_on_jax",
    "tests/training/test_trainer.py",
    "tests/layers/test_cross_backend.py",
    "tests/test_cli.py::test_keras_imports_even_when_the_layers_cannot",
    "tests/reliability/test_export_faults.py::test_kill_during_overwrite",
    "tests/export/test_int8.py::test_int8_on_a_run_is_judged_by_accuracy_drop",
)


def _order(item):
    """HEAVY_FIRST in its order, then the other slow tests, then the rest as collected."""
    for rank, prefix in enumerate(HEAVY_FIRST):
        if item.nodeid.startswith(prefix):
            return rank
    return len(HEAVY_FIRST) + (item.get_closest_marker("slow") is None)


def pytest_collection_modifyitems(items):
    """The longest tests first (a stable sort: the rest keep their order). With `-n 2`
    and `--dist worksteal` (pyproject.toml) the two workers then end together instead
    of one finishing a long test alone while the other idles."""
    items.sort(key=_order)


@contextlib.contextmanager
def built_once(tmp_path_factory, name):
    """`(folder, build)`: the session's folder `name`, shared by the xdist workers.

    The first worker to get here builds it (`build` is True: fill `folder`); the
    others wait for it and get `build` False. Fixtures that train or generate data
    use it so that the two workers do not repeat the work; what they return must
    only be read (tests copy what they change)."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # pytest-N/, shared by this session's popen-gwN/
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        build = not done.exists()
        if build:
            shutil.rmtree(folder, ignore_errors=True)  # a build that failed in the other worker
            folder.mkdir()
        yield folder, build
        done.touch()


def tree_hashes(root):
    """{relative path: sha256} of every file under `root`."""
    root = Path(root)
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def cli(capsys, *argv):
    """(exit code, stdout, stderr) of `bnkeras ARGV` run in this process."""
    from bnkeras.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err
