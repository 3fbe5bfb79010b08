"""Distributed runs in fresh processes: one process can hold only one working
collective setup, and MultiWorkerMirroredStrategy needs one process per worker
(a run refused before training runs in this process)."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

from bnkeras.cli import main
from tests.training.conftest import TINY

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
# As the bnkeras command imports TensorFlow (bnkeras/cli.py): without the garbage
# collector, then frozen, which takes ~25% less CPU.
IMPORT_TENSORFLOW = """
import gc
gc.disable()
import tensorflow as tf
gc.enable()
gc.freeze()
"""
TWO_CPUS = (
    IMPORT_TENSORFLOW
    + """
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
"""
)


def _run(script, *args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _tiny_args(shapes_dir, workdir):
    sets = [f"--set={s}" for s in TINY]
    return ["train", "--workdir", str(workdir), "--data-dir", shapes_dir, *sets]


def test_mirrored_training_with_sync_bn(shapes_dir, tmp_path):
    script = TWO_CPUS + "import sys\nfrom bnkeras.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    result = _run(
        script, *_tiny_args(shapes_dir, tmp_path / "run"), "--strategy", "mirrored", "--sync-bn"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 replica(s)" in result.stdout and "epoch 1/1" in result.stdout
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs_completed"] == 1


def test_mirrored_batch_not_divisible_by_replicas(shapes_dir, tmp_path, capsys):
    # Refused before any collective runs, so in this process (its two logical CPUs).
    args = [*_tiny_args(shapes_dir, tmp_path / "run"), "--strategy", "mirrored"]
    assert main([*args, "--batch-size", "33"]) == 2
    err = capsys.readouterr().err
    assert "batch_size 33 is not divisible by the 2 replicas" in err and "Traceback" not in err


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _workers(argv_for, timeout=600):
    ports = _free_ports(2)
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    processes = []
    for index in range(2):
        env = {
            **ENV,
            "TF_CONFIG": json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": index}}
            ),
        }
        processes.append(
            subprocess.Popen(
                argv_for(index), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append((process.returncode, out, err))
    return results


SYNC_CHECK = (
    IMPORT_TENSORFLOW
    + """
import json, os, sys
import numpy as np
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import bnkeras
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
rng = np.random.default_rng(0)
x = rng.normal(1.0, 2.0, (16, 4, 4, 3)).astype("float32")
x[:8] += 3.0  # the workers see different data
report = {}
for name, make in {
    "bn": lambda **kw: bnkeras.BatchNormalization(**kw),
    "ghost_spanning_workers": lambda **kw: bnkeras.GhostBatchNormalization(virtual_batch_size=12, **kw),
}.items():
    with strategy.scope():
        layer = make(synchronized=True)
        layer.build(x.shape)
    local = tf.constant(x[index * 8 : (index + 1) * 8])
    step = tf.function(lambda b: strategy.run(lambda t: layer(t, training=True), args=(b,)))
    out = strategy.experimental_local_results(step(local))[0].numpy()
    single = make()
    expected = single(x, training=True).numpy()[index * 8 : (index + 1) * 8]
    report[name] = {
        "outputs": float(np.abs(out - expected).max()),
        "moving_mean": float(np.abs(np.asarray(layer.moving_mean) - np.asarray(single.moving_mean)).max()),
        "moving_variance": float(np.abs(np.asarray(layer.moving_variance) - np.asarray(single.moving_variance)).max()),
    }
print("RESULT" + json.dumps(report))
"""
)


@pytest.mark.slow
def test_multiworker_synchronized_statistics_equal_global_batch():
    results = _workers(lambda index: [sys.executable, "-c", SYNC_CHECK])
    for code, out, err in results:
        assert code == 0, err[-3000:]
        report = json.loads(out.split("RESULT", 1)[1])
        for name, errors in report.items():
            assert max(errors.values()) < 1e-5, (name, errors)


@pytest.mark.slow
def test_multiworker_training(shapes_dir, tmp_path):
    workdir = tmp_path / "run"

    def argv(index):
        return [
            sys.executable,
            "-m",
            "bnkeras",
            *_tiny_args(shapes_dir, workdir),
            "--strategy",
            "multiworker",
            "--sync-bn",
        ]

    results = _workers(argv)
    failed = [
        f"worker {i} (exit {code}):\n{err[-3000:]}"
        for i, (code, _, err) in enumerate(results)
        if code
    ]
    assert not failed, "\n".join(failed)
    assert "2 replica(s)" in results[0][1]
    assert json.loads((workdir / "metrics.json").read_text())["epochs_completed"] == 1
    assert not list(workdir.glob(".worker-*"))  # the other worker's scratch copy is gone
