"""Memory during an export: the converters' garbage collected as they go, freed heap
handed back between formats, and collections that skip what existed before.

With TensorFlow and the converters imported, a full `gc.collect()` scans some
350,000 objects and takes ~0.2 s even when there is nothing to free; an export
collects after every format. `frozen_heap` moves the objects alive at its start
out of the collector's sight (`gc.freeze`), so that collections inside it scan
only what the export creates: milliseconds each.
"""

import contextlib
import ctypes
import gc
import resource
import threading


@contextlib.contextmanager
def frozen_heap():
    """Freezes the objects alive now for the block (`gc.freeze`), unfrozen after it.

    Garbage among them waits for the first collection after the block. When some
    objects are frozen already (an enclosing `frozen_heap`, or the caller's own
    `gc.freeze`), the block leaves the freezing alone.
    """
    if gc.get_freeze_count():
        yield
        return
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextlib.contextmanager
def collecting_cycles(interval=0.5):
    """Collects garbage cycles every `interval` seconds while the block runs.

    The converters (tf2onnx's graph rewrites, TensorFlow's tracing) drop large
    objects as reference cycles, which Python's automatic collector leaves for
    long; tf2onnx's default optimizer loop, with a deep copy of the graph per pass,
    took ResNet50 (100 MB of weights) to 7.5 GB without it. Runs in a
    `frozen_heap`, so each collection costs milliseconds.
    """
    stop = threading.Event()

    def collect():
        while not stop.wait(interval):
            gc.collect()

    with frozen_heap():
        thread = threading.Thread(target=collect, name="bnkeras-gc", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


def release_memory():
    """Collects garbage and hands freed heap memory back to the system (glibc).

    glibc keeps freed memory for reuse; between formats it is handed back, so that
    one converter's peak does not stay under the next one's.
    """
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_rss_mb():
    """Peak resident memory of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
