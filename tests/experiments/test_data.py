import sys

import numpy as np
import pytest

from bnkeras.experiments import ReproduceError, data


def test_missing_mnist1d_names_the_extra(monkeypatch):
    data.mnist1d.cache_clear()
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ReproduceError, match=r"bnkeras\[science\].*Received: missing module"):
        data.mnist1d()


def test_mnist1d_is_generated_locally_with_default_arguments():
    pytest.importorskip("mnist1d")
    mnist = data.mnist1d()
    assert mnist.x_train.shape == (4000, 40, 1) and mnist.x_test.shape == (1000, 40, 1)
    assert mnist.num_classes == 10 and mnist.x_train.dtype == np.float32
    small = mnist.subset(100, 20)
    np.testing.assert_array_equal(small.x_train, mnist.x_train[:100])
    assert small.y_test.shape == (20,)


def test_shapes_prefix_is_standardized_and_balanced():
    shapes = data.shapes(200, 50)
    assert shapes.x_train.shape == (200, 32, 32, 3) and shapes.x_test.shape == (50, 32, 32, 3)
    np.testing.assert_allclose(
        shapes.x_train.mean(axis=(0, 1, 2), dtype=np.float64), 0.0, atol=1e-4
    )
    np.testing.assert_allclose(shapes.x_train.std(axis=(0, 1, 2), dtype=np.float64), 1.0, atol=1e-4)
    np.testing.assert_array_equal(np.bincount(shapes.y_train), [20] * 10)


def test_shapes_hard_configuration_has_twenty_balanced_classes():
    hard = data.shapes(400, 100, config="hard")
    assert hard.x_train.shape == (400, 32, 32, 3) and hard.num_classes == 20
    np.testing.assert_array_equal(np.bincount(hard.y_train), [20] * 20)
    default = data.shapes(400, 100)
    assert default.num_classes == 10 and not np.array_equal(default.x_train, hard.x_train)
