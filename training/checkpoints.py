"""Atomic checkpoints of a training run: `checkpoints/` in the work directory.

Each completed epoch is saved as `epoch_NNNN.keras` (model weights and optimizer
state), written to a temporary name and renamed into place; then `state.json`
(format version, epoch, the last and best checkpoint, the best metric, the
config) is replaced the same way. A run killed at any moment therefore finds a
`state.json` naming complete files, and loses at most the epoch in progress.
Only the last and the best checkpoints are kept: older ones that the run wrote
(listed in `bnkeras.training.manifest`, or named by its previous state) are
deleted; a file the run did not write is never touched.
"""

import json
from pathlib import Path

from bnkeras.errors import Error
from bnkeras.training import manifest
from bnkeras.training.files import atomic_save_model, atomic_write_text

FORMAT_VERSION = 1
STATE = "state.json"


def directory(workdir):
    return Path(workdir) / "checkpoints"


class DamagedState(Error, ValueError):
    """state.json exists but cannot be read; the message names the file and what is wrong."""


class UnsupportedState(Error, ValueError):
    """state.json was written by a bnkeras with another checkpoint format."""


def state_path(workdir):
    return directory(workdir) / STATE


def read_state(workdir):
    """The checkpoint state of the run in `workdir`, or None when it has no checkpoint."""
    path = state_path(workdir)
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        what = "is empty" if not path.stat().st_size else f"is not valid JSON ({error})"
        raise DamagedState(f"{path} {what}") from None
    if not isinstance(state, dict) or not isinstance(state.get("last"), str):
        raise DamagedState(f"{path} is not a bnkeras checkpoint state (it names no checkpoint)")
    if state.get("format_version") != FORMAT_VERSION:
        raise UnsupportedState(
            f"{path} has checkpoint format {state.get('format_version')}, this bnkeras reads "
            f"{FORMAT_VERSION}: use another --workdir or --overwrite."
        )
    return state


def save(model, workdir, epoch, metric, config, state=None, monitor="val_accuracy"):
    """Saves epoch `epoch` (1-based, completed) and returns the new state."""
    folder = directory(workdir)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"epoch_{epoch:04d}.keras"
    # Listed first: a kill during the write leaves a listed path missing, not an unlisted file.
    manifest.record(workdir, folder / name, state_path(workdir))
    atomic_save_model(model, folder / name)
    previous = {(state or {}).get("last"), (state or {}).get("best")} - {None}
    state = dict(state or {})
    best_value = state.get("best_value")
    if metric is not None and (best_value is None or metric > best_value):
        state["best"], state["best_value"], state["best_epoch"] = name, float(metric), epoch
    state.update(
        format_version=FORMAT_VERSION, epoch=epoch, last=name, monitor=monitor, config=config
    )
    write_state(workdir, state)
    keep = {state["last"], state.get("best")}
    listed = manifest.written(workdir) or set()
    old = [
        path
        for path in folder.glob("epoch_*.keras")
        if path.name not in keep
        and (path.name in previous or manifest.relative(workdir, path) in listed)
    ]
    for path in old:
        path.unlink(missing_ok=True)
    manifest.forget(workdir, *old)
    for path in folder.glob(".epoch_*.tmp-*"):  # leftovers of a killed run
        path.unlink(missing_ok=True)
    return state


def write_state(workdir, state):
    atomic_write_text(state_path(workdir), json.dumps(state, indent=2) + "\n")


def last_path(workdir, state):
    return directory(workdir) / state["last"]
