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
