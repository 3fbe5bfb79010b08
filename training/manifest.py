"""The files a run wrote in its folders: `.bnkeras-files.json` in the work directory.

A run's top-level files (`workdir.RUN_FILES`) are its own by name: a folder that
holds one of them without a run is refused before anything is written. Under
`checkpoints/` and `tensorboard/`, though, a user may keep files of their own (a
backup, notes, another experiment's TensorBoard logs). The run lists there every
file it writes, as a path relative to the work directory, before or right after
writing it; `--overwrite` and the checkpoint rotation delete listed files only.
A path is listed before the file is written when a kill could otherwise leave an
unlisted file of the run behind (a checkpoint), so that a listed path may be
missing, never the other way round.
"""

import json
from pathlib import Path, PurePosixPath

from bnkeras.training.files import atomic_write_text

MANIFEST = ".bnkeras-files.json"
FORMAT_VERSION = 1


def path(root):
    return Path(root) / MANIFEST


def written(root):
    """The relative paths that the run in `root` listed, or None when it keeps no list
    (a run made before bnkeras kept one, or no run); a damaged list reads as None."""
    try:
        data = json.loads(path(root).read_text())
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def relative(root, file):
    """`file` (absolute, or relative to `root`) as the manifest lists it."""
    file = Path(file)
    if file.is_absolute():
        file = file.relative_to(Path(root))
    return PurePosixPath(file).as_posix()


def _write(root, files):
    text = json.dumps({"format_version": FORMAT_VERSION, "files": sorted(files)}, indent=1)
    atomic_write_text(path(root), text + "\n")


def record(root, *files):
    """Adds `files` to the list of `root` (a no-op when all are listed already)."""
    listed = written(root) or set()
    new = {relative(root, f) for f in files} - listed
    if new:
        _write(root, listed | new)


def forget(root, *files):
    """Removes `files` from the list of `root` (after deleting them)."""
    listed = written(root)
    if listed is None:
        return
    gone = {relative(root, f) for f in files} & listed
    if gone:
        _write(root, listed - gone)
