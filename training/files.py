"""Writing the files of a run atomically: to a temporary name, then `os.replace`.

A run killed at any moment leaves either the old file or the new one, never half
of one (the temporary names start with "." and are cleaned up by the next save).
"""

import os


def _temporary(path, suffix=""):
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def atomic_write_text(path, text):
    tmp = _temporary(path)
    with open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_save_model(model, path):
    tmp = _temporary(path, ".keras")  # Keras picks the format from the suffix
    model.save(tmp)
    os.replace(tmp, path)
