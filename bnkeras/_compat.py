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
