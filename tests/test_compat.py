"""Each private Keras name in `bnkeras._compat`: a test that fails clearly on an upgrade."""

import keras

from bnkeras import _compat


def test_is_graph_model_tells_functional_and_sequential_from_subclassed():
    inputs = keras.Input((2,))
    functional = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    sequential = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    assert _compat.is_graph_model(functional), (
        "keras.src.models.functional.Functional no longer matches a functional model: "
        "update bnkeras/_compat.py is_graph_model for this Keras release"
    )
    assert _compat.is_graph_model(sequential)
    assert not _compat.is_graph_model(Subclassed())
    assert not _compat.is_graph_model(keras.layers.Dense(1))


def test_scale_learning_rates_reaches_every_optimizer_variable():
    """`_get_variable_index` and `_trainable_variables` map the backend's variable of an
    update back to the Keras variable: one SGD step moves a variable scaled by 0 not at all."""
    import numpy as np

    dense = keras.layers.Dense(2)
    dense.build((None, 3))
    optimizer = keras.optimizers.SGD(1.0)
    optimizer.build(dense.trainable_variables)
    frozen = dense.kernel
    _compat.scale_learning_rates(optimizer, lambda v: 0.0 if v is frozen else 1.0)
    before = [np.array(v) for v in dense.trainable_variables]
    optimizer.apply([np.ones(v.shape, "float32") for v in dense.trainable_variables])
    after = [np.array(v) for v in dense.trainable_variables]
    assert np.array_equal(before[0], after[0]), (
        "Keras's optimizer internals changed: update bnkeras/_compat.py scale_learning_rates"
    )
    assert np.allclose(after[1], before[1] - 1.0)
