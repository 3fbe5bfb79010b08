"""The work directory of a training run: its files, its lock, its config and its model.

`bnkeras train`, `bnkeras evaluate` and `bnkeras export` all read a run through
this module, so one set of rules decides:

- which files belong to a run: its top-level files by name (`RUN_FILES`, the lock
  and hidden temporary files; a folder holding a file of the same name that no
  run wrote is refused), and under `RUN_DIRS` the files it listed as it wrote
  them (`bnkeras.training.manifest`). `--overwrite` deletes those and nothing
  else: a user's own files in `checkpoints/` or `tensorboard/`, at any depth,
  are kept and named;
- the run's config: `config.yaml`, else the copy in `checkpoints/state.json`;
- the run's classes (`classes.json`: names in label order, count, held-out rule),
  with which evaluate, export and a resumed run read its data again (by class
  name, refusing another class set);
- where a run may not be: inside its own image folder (its files would be read as
  images);
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
import re
import warnings
import zipfile
from pathlib import Path

from bnkeras.errors import Error
from bnkeras.training import checkpoints, manifest
from bnkeras.training.config import DEFAULTS, apply, load_run_config
from bnkeras.training.files import atomic_write_text, files_under

logger = logging.getLogger(__name__)

CONFIG = "config.yaml"
MODEL = "model.keras"
CLASSES = "classes.json"
LOCK = ".lock"
RUN_FILES = (CONFIG, "log.csv", "metrics.json", MODEL, "curves.png", CLASSES)
CLASSES_VERSION = 1
RUN_DIRS = ("checkpoints", "tensorboard")
EVENTS_PREFIX = "events.out.tfevents."  # the files of Keras's TensorBoard callback


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


def legacy_files(root):
    """The files under `RUN_DIRS` that a run made before bnkeras listed its files wrote:
    `checkpoints/state.json`, the checkpoints it names (a run kept only its last and
    best) and the TensorBoard event files of `tensorboard/train` and
    `tensorboard/validation` (relative paths)."""
    root = Path(root)
    folder = checkpoints.directory(root)
    found = [checkpoints.state_path(root)]
    with contextlib.suppress(OSError, ValueError):  # a damaged state names no checkpoint
        state = checkpoints.read_state(root) or {}
        found += [
            folder / state[key]
            for key in ("last", "best")
            if isinstance(state.get(key), str) and re.fullmatch(r"epoch_\d+\.keras", state[key])
        ]
    for split in ("train", "validation"):
        events = root / "tensorboard" / split
        if events.is_dir():
            found += [p for p in events.iterdir() if p.name.startswith(EVENTS_PREFIX)]
    return {manifest.relative(root, p) for p in found if p.is_file() and not p.is_symlink()}


def owned_files(root):
    """The files under `RUN_DIRS` of the run in `root` (relative paths): those it listed,
    else (a run from before the list) `legacy_files`."""
    listed = manifest.written(root)
    if listed is None:
        return legacy_files(root)
    # Only paths inside the run's folders: the list is a file a user could edit.
    return {
        f
        for f in listed
        if f.split("/", 1)[0] in RUN_DIRS and ".." not in f.split("/") and not f.startswith("/")
    }


def folder_files(root):
    """Every file (or link) under the `RUN_DIRS` of `root`, relative paths, at any depth."""
    return [f"{name}/{f}" for name in RUN_DIRS for f in files_under(Path(root) / name)]


def _remove_empty_dirs(folder):
    for parent, _, _ in sorted(os.walk(folder), key=lambda item: -item[0].count(os.sep)):
        with contextlib.suppress(OSError):  # not empty: it holds a file the run did not write
            os.rmdir(parent)


def _clear_root(root):
    """Deletes what the run in `root` wrote; returns the files kept under its folders."""
    for name in RUN_FILES:
        (root / name).unlink(missing_ok=True)
    for relative in owned_files(root):
        target = root / relative
        if target.is_file() or target.is_symlink():
            target.unlink()
    remove_temporary(root)
    manifest.path(root).unlink(missing_ok=True)
    for name in RUN_DIRS:
        _remove_empty_dirs(root / name)
    return folder_files(root)


def clear(workdir):
    """Deletes the files of the run in `workdir` and nothing else.

    Returns the files (relative to `workdir`) that were kept in the run's folders
    because the run did not write them.
    """
    workdir = Path(workdir)
    kept = _clear_root(workdir)
    for worker in sorted(workdir.glob(".worker-*")):  # scratch roots of the other workers
        if worker.is_dir() and not worker.is_symlink():
            kept += [f"{worker.name}/{f}" for f in _clear_root(worker)]
            with contextlib.suppress(OSError):
                worker.rmdir()
    return kept


def record_event_files(workdir, before):
    """Lists the TensorBoard event files that this process wrote in `workdir` (not in `before`)."""
    folder = Path(workdir) / "tensorboard"
    if not folder.is_dir():
        return
    pid = f".{os.getpid()}."
    new = [
        p
        for p in folder.rglob(f"{EVENTS_PREFIX}*")
        if pid in p.name and manifest.relative(workdir, p) not in before
    ]
    if new:
        manifest.record(workdir, *new)


def remove_temporary(workdir):
    """Deletes the temporary files that a killed run left beside its files."""
    workdir = Path(workdir)
    for name in (*RUN_FILES, manifest.MANIFEST):
        for path in workdir.glob(f".{name}.tmp-*"):
            path.unlink(missing_ok=True)
    for path in checkpoints.directory(workdir).glob(".*.tmp-*"):
        if path.name.startswith((".epoch_", f".{checkpoints.STATE}.")):
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


def check_outside_data(workdir, data_config):
    """Refuses a work directory inside (or equal to) the image folder it trains on: its
    files (curves.png, checkpoints) would be read as images, and itself as a class."""
    from bnkeras.training.data import FOLDER

    if data_config.get("dataset") != FOLDER or not data_config.get("data_dir"):
        return
    data_dir = Path(data_config["data_dir"]).resolve()
    inside = Path(workdir).resolve()
    if inside == data_dir or data_dir in inside.parents:
        raise WorkdirError(
            f"The work directory {workdir} is inside the image folder {data_config['data_dir']}: "
            "the run's files would be read as images (and its folder as a class). Choose a "
            "--workdir outside the image folder."
        )


# ------------------------------------------------------------------------ classes


def write_classes(workdir, data):
    """Stores the class names (in label order) and the held-out rule of `data` (a `Data`)."""
    record = {
        "format_version": CLASSES_VERSION,
        "count": len(data.classes),
        "classes": list(data.classes),
        "holdout": data.holdout,
    }
    atomic_write_text(Path(workdir) / CLASSES, json.dumps(record, indent=2) + "\n")


def read_classes(workdir):
    """(class names, held-out rule) stored by the run in `workdir`; None for a run made
    before runs stored them. A damaged classes.json is a `WorkdirError`."""
    path = Path(workdir) / CLASSES
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
        classes, holdout = record["classes"], record["holdout"]
        valid = (
            record.get("format_version") == CLASSES_VERSION
            and isinstance(classes, list)
            and all(isinstance(c, str) for c in classes)
            and len(classes) == record["count"]
            and (holdout is None or isinstance(holdout, str))
        )
    except (OSError, UnicodeDecodeError, ValueError, TypeError, KeyError):
        valid = False
    if not valid:
        raise WorkdirError(
            f"{path} is damaged (not the class list bnkeras wrote): rerun the run's `bnkeras "
            "train` command with --overwrite to train it again, or restore the file."
        )
    return classes, holdout


def data_options(workdir, data_config):
    """The `load_data` keyword arguments that read the run's data as it was trained:
    its classes (images labelled by name) and its held-out rule.

    A run made before runs stored their classes is read as then (classes in the sorted
    order of the folder names, the old held-out rule), with a warning for an image folder.
    """
    from bnkeras.training.data import FOLDER, HOLDOUT_BY_PATH

    stored = read_classes(workdir)
    if stored is not None:
        return {"classes": stored[0], "holdout": stored[1]}
    if data_config.get("dataset") != FOLDER:
        return {}
    warnings.warn(
        f"{workdir} has no {CLASSES} (it was trained by an older bnkeras): its classes are "
        "taken as the sorted class folder names, so a renamed, added or removed class folder "
        "goes unnoticed.",
        UserWarning,
        stacklevel=2,
    )
    return {"holdout": HOLDOUT_BY_PATH}


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


def _run_data_config(workdir):
    config = run_config(workdir)
    if config is None:
        config = load_run_config(workdir)  # raises the ConfigError that names config.yaml
    return config["data"]


def verification_batch(workdir, batch_size):
    """A batch of evaluation images of the run in `workdir` (the first, unaugmented),
    read with the run's classes.

    Raises what reading the run's config or data raises (`ClassesChanged` for data
    whose classes are not the run's), so that the caller can say why.
    """
    from bnkeras.training.data import first_eval_batch

    data_config = _run_data_config(workdir)
    return first_eval_batch(data_config, batch_size, **data_options(workdir, data_config))


def load_run_data(workdir, batch_size, *, train=True):
    """The run's data (`load_data`), read with the run's classes and held-out rule."""
    from bnkeras.training.data import load_data

    data_config = _run_data_config(workdir)
    return load_data(data_config, batch_size, train=train, **data_options(workdir, data_config))


def read_metrics(workdir):
    """metrics.json of a finished run, or None when it is missing or damaged."""
    try:
        metrics = json.loads((Path(workdir) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


__all__ = [
    "CLASSES",
    "RUN_DIRS",
    "RUN_FILES",
    "WorkdirError",
    "check_outside_data",
    "check_owned",
    "clear",
    "damage",
    "data_options",
    "folder_files",
    "is_legacy_hdf5",
    "is_run",
    "legacy_files",
    "legacy_hdf5_message",
    "load_model",
    "load_model_file",
    "load_run_data",
    "lock",
    "read_classes",
    "read_metrics",
    "owned_files",
    "record_event_files",
    "remove_temporary",
    "resume_state",
    "run_config",
    "verification_batch",
    "write_classes",
]
