"""The work directory of a training run: its files, its lock, its config and its model.

`bnkeras train`, `bnkeras evaluate` and `bnkeras export` all read a run through
this module, so one set of rules decides:

- which files belong to a run (`RUN_FILES`, `RUN_DIRS`, the lock and hidden
  temporary files): `--overwrite` deletes those and nothing else, and a folder
  holding a file of the same name that no run wrote is refused;
- the run's config: `config.yaml`, else the copy in `checkpoints/state.json`;
- where training resumes: the last checkpoint, else (damaged or missing) the best
  one, else the newest intact one when `state.json` itself is damaged;
- the run's model (`model.keras`, else the last checkpoint) and a batch of its
  evaluation data for verification;
- the lock: one training process per work directory (`fcntl.flock`, released by
  the kernel when the process ends, even by `kill -9`). Reading a run (evaluate,
  export) takes no lock: every file is replaced atomically, so a reader sees the
  previous or the next version of a file.

Problems are `WorkdirError`s: one line naming the file and the fix.
"""

import contextlib
import copy
import fcntl
import json
import logging
import os
import shutil
import warnings
import zipfile
from pathlib import Path

from bnkeras.errors import Error
from bnkeras.training import checkpoints
from bnkeras.training.config import DEFAULTS, apply, load_run_config

logger = logging.getLogger(__name__)

CONFIG = "config.yaml"
MODEL = "model.keras"
LOCK = ".lock"
RUN_FILES = (CONFIG, "log.csv", "metrics.json", MODEL, "curves.png")
RUN_DIRS = ("checkpoints", "tensorboard")


class WorkdirError(Error, ValueError):
    """A work directory that cannot be used as asked; the message names the file and the fix."""


# -------------------------------------------------------------------------- files


def is_run(workdir):
    """True when `workdir` holds a bnkeras run (its config or its checkpoint state)."""
    workdir = Path(workdir)
    return (workdir / CONFIG).is_file() or (
        checkpoints.directory(workdir) / checkpoints.STATE
    ).is_file()


def check_owned(workdir):
    """Refuses a folder where a run would overwrite files that no run wrote."""
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise WorkdirError(f"The work directory {workdir} is a file: choose a directory path.")
    if not workdir.is_dir() or is_run(workdir):
        return
    foreign = [name for name in (*RUN_FILES, *RUN_DIRS) if (workdir / name).exists()]
    if foreign:
        raise WorkdirError(
            f"The work directory {workdir} holds {', '.join(foreign)} but no bnkeras run "
            f"(no {CONFIG} or checkpoints/{checkpoints.STATE}); a run would overwrite them: "
            "choose another --workdir or move them away."
        )


def clear(workdir):
    """Deletes the files of the run in `workdir` (never anything else in the folder)."""
    workdir = Path(workdir)
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for path in workdir.glob(".worker-*"):
        shutil.rmtree(path, ignore_errors=True)
    remove_temporary(workdir)


def remove_temporary(workdir):
    """Deletes the temporary files that a killed run left beside its files."""
    for name in RUN_FILES:
        for path in Path(workdir).glob(f".{name}.tmp-*"):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def lock(workdir):
    """Holds the work directory's lock; a second holder gets a `WorkdirError` naming the PID.

    The lock is an exclusive `flock` on `workdir/.lock` (which holds the PID of its
    holder); the kernel drops it when the process ends, so a crashed run leaves no
    stale lock. The file is removed on release.
    """
    workdir = Path(workdir)
    path = workdir / LOCK
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        while True:
            handle = open(path, "a+")  # noqa: SIM115 - held open for the whole run
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise WorkdirError(
                    f"The work directory {workdir} is in use by another bnkeras train "
                    f"(PID {holder}): wait for it to finish, or stop it and rerun to resume."
                ) from None
            # The previous holder may have removed the file between our open and flock.
            if path.exists() and os.path.samestat(os.fstat(handle.fileno()), path.stat()):
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
    except OSError as error:
        raise WorkdirError(
            f"Cannot write to the work directory {workdir}: {error.strerror or error}. "
            "Choose a writable --workdir."
        ) from None
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        handle.close()


# ------------------------------------------------------------------------- config


def run_config(workdir):
    """The config of the run in `workdir`: config.yaml, else the one in state.json, else None."""
    workdir = Path(workdir)
    if (workdir / CONFIG).is_file():
        return load_run_config(workdir)
    state = _read_state_for_config(workdir)
    if state is None or not isinstance(state.get("config"), dict):
        return None
    return apply(copy.deepcopy(DEFAULTS), state["config"], str(checkpoints.state_path(workdir)))


def _read_state_for_config(workdir):
    """`checkpoints.read_state` with a damaged state.json turned into a `WorkdirError`."""
    try:
        return checkpoints.read_state(workdir)
    except checkpoints.DamagedState as error:
        raise WorkdirError(
            f"{error} and there is no {CONFIG} to take the run's config from: start the run "
            "again with --overwrite (deletes this run's files) or use another --workdir."
        ) from None


# ---------------------------------------------------------------------- resuming


def damage(path):
    """None for an intact .keras file, else what is wrong with it."""
    if not path.is_file():
        return "is missing"
    if not zipfile.is_zipfile(path):
        return "is damaged (empty or truncated, not a complete .keras file)"
    try:
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return "is damaged (a member fails its CRC check)"
    except (OSError, zipfile.BadZipFile) as error:
        return f"is damaged ({error})"
    return None


def resume_state(workdir, config):
    """(state, note): the checkpoint state to resume from, or (None, None) for a new run.

    When the last checkpoint is missing or damaged, the best checkpoint is used
    instead; when state.json is damaged, the newest intact checkpoint (the run's
    config then comes from `config`). `note` says what was done, for the log.
    """
    folder = checkpoints.directory(workdir)
    try:
        state = checkpoints.read_state(workdir)
    except checkpoints.DamagedState as error:
        return _recover_state(workdir, config, str(error))
    if state is None:
        return None, None
    last = folder / state["last"]
    problem = damage(last)
    if problem is None:
        return state, None
    best = state.get("best")
    if best and best != state["last"] and damage(folder / best) is None:
        epoch = int(state["best_epoch"])
        note = f"{last} {problem}: resuming from the best checkpoint {best} (epoch {epoch}) instead"
        return {**state, "epoch": epoch, "last": best}, note
    raise WorkdirError(
        f"{last} {problem} and the run has no older intact checkpoint: start the run again "
        "with --overwrite (deletes this run's files) or use another --workdir."
    )


def _recover_state(workdir, config, problem):
    folder = checkpoints.directory(workdir)
    for path in sorted(folder.glob("epoch_*.keras"), reverse=True):
        if damage(path) is None:
            epoch = int(path.stem.split("_")[1])
            state = {
                "format_version": checkpoints.FORMAT_VERSION,
                "epoch": epoch,
                "last": path.name,
                "monitor": "val_accuracy",
                "config": config,
            }
            return (
                state,
                f"{problem}: resuming from the newest intact checkpoint {path.name} (epoch {epoch})",
            )
    raise WorkdirError(
        f"{problem} and {folder} holds no intact checkpoint: start the run again with "
        "--overwrite (deletes this run's files) or use another --workdir."
    )


# ------------------------------------------------------------------------- model


def load_model_file(path):
    """A `.keras` file loaded without compiling; a one-line `WorkdirError` when it cannot be."""
    import re

    import keras

    path = Path(path)
    if path.is_file() and is_legacy_hdf5(path):
        raise WorkdirError(legacy_hdf5_message(path))
    problem = damage(path)
    if problem is not None:
        raise WorkdirError(f"{path} could not be loaded: it {problem}. Give an intact .keras file.")
    try:
        return keras.saving.load_model(path, compile=False)
    except (TypeError, ValueError) as error:  # Keras's errors for a file it cannot rebuild
        missing = sorted(set(re.findall(r"Could not locate class '([^']+)'", str(error))))
        if missing:
            raise WorkdirError(
                f"{path} uses custom classes that are not registered: {', '.join(missing)}. "
                "Import the code that defines them (decorated with "
                "@keras.saving.register_keras_serializable()) first."
            ) from error
        first = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        raise WorkdirError(
            f"{path} could not be loaded as a Keras model ({type(error).__name__}: {first})."
        ) from error


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_legacy_hdf5(path):
    """True for a file in HDF5 format (Keras 2's legacy `model.save("x.h5")`)."""
    try:
        with open(path, "rb") as file:
            return file.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError:
        return False


def legacy_hdf5_message(path):
    return (
        f"{path} is a Keras model in the legacy HDF5 format; bnkeras reads the .keras format. "
        f"Convert it once in Python: keras.saving.load_model({str(path)!r}, compile=False)"
        f".save({str(Path(path).with_suffix('.keras'))!r}) (pass custom_objects= for custom "
        "layers), then give the .keras file."
    )


def load_model(workdir):
    """The final model of the run in `workdir`, else its last checkpoint (logged)."""
    workdir = Path(workdir)
    final = workdir / MODEL
    if final.exists():
        problem = damage(final)
        if problem is not None:
            raise WorkdirError(
                f"{final} could not be loaded: it {problem}. Rerun the run's `bnkeras train` "
                "command to write it again from the last checkpoint."
            )
        return load_model_file(final)
    if not checkpoints.state_path(workdir).is_file():
        raise WorkdirError(
            f"{workdir} holds neither {MODEL} nor a checkpoint: train first (bnkeras train)."
        )
    state, note = resume_state(workdir, None)
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    logger.info(
        "%s has no %s (the run has not finished): using its checkpoint of epoch %d",
        workdir,
        MODEL,
        state["epoch"],
    )
    return load_model_file(checkpoints.last_path(workdir, state))


def verification_batch(workdir, batch_size):
    """A batch of evaluation images of the run in `workdir` (the first, unaugmented).

    Raises what reading the run's config or data raises, so that the caller can say why.
    """
    from bnkeras.training.data import verification_batch as first_eval_batch

    return first_eval_batch(workdir, batch_size)


def read_metrics(workdir):
    """metrics.json of a finished run, or None when it is missing or damaged."""
    try:
        metrics = json.loads((Path(workdir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


__all__ = [
    "RUN_DIRS",
    "RUN_FILES",
    "WorkdirError",
    "check_owned",
    "clear",
    "damage",
    "is_legacy_hdf5",
    "is_run",
    "legacy_hdf5_message",
    "load_model",
    "load_model_file",
    "lock",
    "read_metrics",
    "remove_temporary",
    "resume_state",
    "run_config",
    "verification_batch",
]
