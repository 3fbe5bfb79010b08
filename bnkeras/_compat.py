"""The private parts of Keras that bnkeras uses, in one place.

Each name here has a test in tests/test_compat.py that fails with a clear message
when a Keras upgrade removes or changes it; the `keras<3.16` cap in setup.cfg
follows from this list (lift it once those tests pass on the new release).
"""

import keras
from keras.src.models.functional import Functional


def is_graph_model(model) -> bool:
    """True for a Functional model (a subclass included) or a Sequential model: the
    models whose layer graph Keras can rebuild (`keras.models.clone_model`). Keras
    exports no public class to test this with; `clone_model` itself tests
    `isinstance(model, Functional)`."""
    return isinstance(model, (Functional, keras.Sequential))


def scale_learning_rates(optimizer, scale_of) -> None:
    """Makes `optimizer` multiply the learning rate of each variable's update by
    `scale_of(variable)` (the Keras variable; a Python float, read when the step is
    traced). Keras 3 optimizers have no parameter groups; every optimizer computes
    its updates in `update_step(gradient, variable, learning_rate)`, which gets the
    backend's variable: `_get_variable_index` and `_trainable_variables` (what Keras's
    own optimizers use to find a variable's slots) map it back to the Keras one.
    """
    update_step = optimizer.update_step

    def scaled(gradient, variable, learning_rate):
        index = optimizer._get_variable_index(variable)  # noqa: SLF001
        scale = scale_of(optimizer._trainable_variables[index])  # noqa: SLF001
        return update_step(gradient, variable, learning_rate * scale)

    optimizer.update_step = scaled
