"""Cross-device statistics on JAX: under `keras.distribution.DataParallel` the layers
normalize with the statistics of the global batch, as `synchronized=True` gives on
TensorFlow (tests/harness.py `check_synchronized`). JAX computes on global arrays, so
the batch mean over a batch sharded across devices is the global one (XLA adds the
all-reduce); ghost batches are cut from the global batch, as one device would cut them.

tests/conftest.py gives the JAX process two CPU devices
(`--xla_force_host_platform_device_count=2`).
"""

import contextlib

import keras
import numpy as np
import pytest

import bnkeras
from tests import harness

if harness.BACKEND != "jax":
    pytest.skip("JAX's DataParallel; TensorFlow: check_synchronized", allow_module_level=True)

import jax  # noqa: E402


def _one_step(make_layer, x, distribution=None):
    """The layer's weights after one `fit` step on `x` (SGD with rate 0: only the
    statistics move)."""
    scope = distribution.scope() if distribution else contextlib.nullcontext()
    with scope:
        model = keras.Sequential([keras.Input(x.shape[1:]), make_layer()])
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        model.fit(x, np.zeros_like(x), batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    return {w.name: np.asarray(w) for w in model.layers[0].weights}


@pytest.mark.parametrize(
    "make_layer",
    [
        bnkeras.BatchNormalization,
        # ghost batches of 12 over 2 x 16 examples: the second spans the devices
        lambda: bnkeras.GhostBatchNormalization(virtual_batch_size=12),
        lambda: bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, virtual_batch_size=12),
    ],
    ids=["bn", "ghost", "renorm"],
)
def test_data_parallel_statistics_are_the_global_batchs(make_layer, rng):
    devices = jax.devices("cpu")
    if len(devices) < 2:
        pytest.skip("needs 2 devices (XLA_FLAGS=--xla_force_host_platform_device_count=2)")
    x = harness.random_batch(rng, (32, 4, 4, 3))
    x[:16] += 3.0  # the devices see different data
    single = _one_step(make_layer, x)
    parallel = _one_step(make_layer, x, keras.distribution.DataParallel(devices=devices[:2]))
    for name, value in single.items():
        np.testing.assert_allclose(parallel[name], value, atol=1e-5, err_msg=name)
    # The check can fail: one device's half alone gives other statistics.
    local = _one_step(make_layer, x[:16])
    assert not np.allclose(local["moving_mean"], single["moving_mean"], atol=1e-3)
