"""`bnkeras.export.memory.frozen_heap`: collections in the block skip what existed before it."""

import gc
import weakref

import keras
import pytest

from bnkeras.export.memory import frozen_heap
from bnkeras.export.pipeline import export_model


class _Node:
    pass


def _cycle_collected_inside():
    node = _Node()
    node.self = node  # freed only by the collector
    ref = weakref.ref(node)
    del node
    gc.collect()
    return ref() is None


@pytest.fixture
def unfrozen():
    """The test processes freeze their heap after collection (tests/conftest.py)."""
    gc.unfreeze()
    yield
    gc.collect()
    gc.freeze()


def _scanned(obj):
    """True when the collector scans `obj` (frozen objects are not in gc.get_objects())."""
    return any(o is obj for o in gc.get_objects())


def test_freezes_what_exists_for_the_block_and_unfreezes_after(unfrozen):
    before = _Node()
    assert _scanned(before)
    with frozen_heap():
        assert not _scanned(before)
        made = _Node()
        assert _scanned(made)  # what the block makes is scanned
        assert _cycle_collected_inside()  # and its garbage collected
    assert gc.get_freeze_count() == 0 and _scanned(before)


def test_an_error_in_the_block_unfreezes_too(unfrozen):
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("in the block")
    assert gc.get_freeze_count() == 0


def test_an_export_leaves_nothing_frozen(unfrozen, tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.save(tmp_path / "m.keras")
    assert export_model(tmp_path / "m.keras", tmp_path / "out", formats=["keras"]).passed
    assert gc.get_freeze_count() == 0


def test_leaves_a_callers_freeze_alone():
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    assert frozen > 0
    with frozen_heap():
        assert gc.get_freeze_count() == frozen
        assert _cycle_collected_inside()
    assert gc.get_freeze_count() == frozen  # not unfrozen by the block
