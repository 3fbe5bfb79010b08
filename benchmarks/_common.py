"""What the benchmark scripts share: the device line of their tables and the compile step.

The scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path`.
"""

import os
import platform

import keras
import tensorflow as tf


def device() -> str:
    """The accelerator, else the CPU's model name (from /proc/cpuinfo) and core count."""
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        names = [
            tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
        ]
        return f"GPU ({', '.join(names)})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        pass
    return f"CPU ({cpu}, {os.cpu_count()} cores)"


def compile_for_training(model, jit_compile=False):
    """SGD with momentum on sparse-label logits: the same train step for every candidate."""
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model
