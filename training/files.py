"""Writing the files of a run atomically: to a temporary name, then `os.replace`.

A run killed at any moment leaves either the old file or the new one, never half
of one (the temporary names start with "." and are cleaned up by the next save).
A write that fails (disk full, read-only file system, Ctrl-C) removes its
temporary file before the error goes on, so a full disk is not left fuller.
"""

import contextlib
import os
from pathlib import PurePath


def _temporary(path, suffix=""):
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


@contextlib.contextmanager
def replacing(path, suffix=""):
    """Yields a temporary path beside `path`; renamed to `path` on success, removed on failure."""
    tmp = _temporary(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)  # name the file the user knows, not the temporary one
        raise


def atomic_write_text(path, text):
    with replacing(path) as tmp, open(tmp, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_save_model(model, path):
    with replacing(path, ".keras") as tmp:  # Keras picks the format from the suffix
        model.save(tmp)


def files_under(folder):
    """Every file or link under `folder`, at any depth (links are not followed), as
    sorted relative POSIX paths; empty for a missing folder."""
    found = []
    for parent, dirs, files in os.walk(folder):
        links = [d for d in dirs if os.path.islink(os.path.join(parent, d))]
        found += [
            PurePath(os.path.relpath(os.path.join(parent, f), folder)).as_posix()
            for f in (*files, *links)
        ]
    return sorted(found)
