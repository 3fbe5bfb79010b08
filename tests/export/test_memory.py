"""`bnkeras.export.memory.frozen_heap`: collections in the block skip what existed before it."""

import gc
import os
import subprocess
import sys
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
    # Not unfrozen by the block (that leaves 0). A frozen object that is freed meanwhile
    # (another thread's, say) leaves the permanent generation: the count may drop by a few.
    with frozen_heap():
        assert gc.get_freeze_count() > 0.99 * frozen
        assert _cycle_collected_inside()
    assert gc.get_freeze_count() > 0.99 * frozen


def test_an_export_from_a_program_leaves_its_output_and_collector_alone(tmp_path):
    """Design rule 15: a print of the calling program during `export_model` (here from a
    writer it wraps, while the converters run) reaches its standard output, not export.log;
    the collector's state is as before (the fd capture is the `bnkeras` command's only)."""
    script = """
import gc, sys
import keras
from bnkeras.export import pipeline

keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]).save(sys.argv[1] + "/m.keras")
write_keras = pipeline.write_keras

def noisy(*args):
    print("caller's print inside the export", flush=True)
    return write_keras(*args)

pipeline.write_keras = noisy
gc.disable()
before = gc.isenabled(), gc.get_freeze_count()
result = pipeline.export_model(sys.argv[1] + "/m.keras", sys.argv[1] + "/out", formats=["keras"])
print("state", before == (gc.isenabled(), gc.get_freeze_count()), result.passed)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr
    assert "caller's print inside the export" in done.stdout
    assert "caller's print" not in (tmp_path / "out" / "export.log").read_text()
    assert "state True True" in done.stdout
