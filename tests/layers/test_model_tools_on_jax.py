"""Precise BN, the converter and the fold on a model of another backend (JAX in CI;
PyTorch where tests/test_torch_backend.py runs the layer tests on it).

On TensorFlow these have tests of their own (tests/test_recalibrate.py,
tests/test_convert.py, tests/export/test_fold.py); here the same calls run on the
`keras.ops` path of the layers, without TensorFlow, and `verify` checks the folded
`.keras` model against the original.
"""

import keras
import numpy as np
import pytest

import bnkeras
from tests import harness

if harness.ON_TENSORFLOW:
    pytest.skip(
        "tested on TensorFlow by tests/test_recalibrate.py, tests/test_convert.py and "
        "tests/export/test_fold.py",
        allow_module_level=True,
    )


def _model():
    return keras.Sequential(
        [
            keras.Input((6, 6, 3)),
            bnkeras.BatchNormalization(name="first"),
            keras.layers.Conv2D(4, 3, use_bias=False),
            bnkeras.BatchRenormalization(rmax=2.0, dmax=1.0, name="renorm"),
            keras.layers.ReLU(),
            bnkeras.GhostBatchNormalization(virtual_batch_size=4, name="ghost"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


def test_recalibrate_convert_and_fold(rng, tmp_path):
    model = _model()
    model.build((None, 6, 6, 3))
    for layer in model.layers:
        if "norm" in type(layer).__name__.lower():
            harness.randomize_statistics(layer, rng)
    x = harness.random_batch(rng, (24, 6, 6, 3))
    batches = [x[:8], x[8:16], x[16:]]
    assert bnkeras.recalibrate_batchnorm(model, batches, 3) == 3
    # The first layer sees the data: its moving mean is the mean of the batch means.
    expected = np.mean([b.mean((0, 1, 2)) for b in batches], 0)
    harness.assert_allclose(model.get_layer("first").moving_mean, expected, atol=1e-5)
    reference = model.predict(x, verbose=0)

    converted = bnkeras.convert_batchnorm(model, norm="keras")
    kinds = [type(layer) for layer in converted.layers]
    assert kinds.count(keras.layers.BatchNormalization) == 3
    harness.assert_allclose(converted.predict(x, verbose=0), reference, atol=1e-5)

    from bnkeras.export import fold_batchnorm, verify

    folded = fold_batchnorm(model).model
    assert not any(isinstance(layer, bnkeras.layers.base.BatchNormBase) for layer in folded.layers)
    harness.assert_allclose(folded.predict(x, verbose=0), reference, atol=1e-4)
    assert verify(model, x, folded=folded).passed
    # The folded model as a .keras file, loaded back on this backend.
    folded.save(tmp_path / "folded.keras")
    loaded = keras.saving.load_model(tmp_path / "folded.keras")
    assert verify(model, x, folded=loaded).passed
    harness.assert_allclose(loaded.predict(x, verbose=0), reference, atol=1e-4)
