"""The output directory of `bnkeras export`: what may be replaced, and replacing it atomically.

An export is written into a hidden temporary directory beside `--out`
(`.NAME.partial-PID`, holding a marker file) and moved into place at the end:

- `--out` does not exist: one rename (`RENAME_NOREPLACE` where Linux offers it).
- `--out` holds a previous export and `--overwrite` was given: on Linux one
  `renameat2(RENAME_EXCHANGE)` swaps the two directories atomically, and the
  old export (now under the temporary name) is deleted; elsewhere the old export
  is renamed to `.NAME.backup-PID`, the new one renamed into place, and the
  backup deleted.

A kill at any moment therefore leaves `--out` holding the old or the new export.
What a killed export leaves behind (its temporary directory, or a backup with no
`--out`, which is renamed back) is cleaned by the next export to the same `--out`:
only entries named by the patterns above whose process is gone and that hold our
marker file or a bnkeras export's report.json.
"""

import contextlib
import ctypes
import errno
import json
import logging
import os
import re
import shutil
from pathlib import Path

from bnkeras.errors import Error
from bnkeras.training.files import files_under

logger = logging.getLogger(__name__)

REPORT = "report.json"
MARKER = ".bnkeras-export-partial"
# report.json carries this field with the export format version; it is what makes
# a directory a bnkeras export that --overwrite may replace.
EXPORT_FIELD = "bnkeras_export"
EXPORT_VERSION = 1

_TEMP_KINDS = ("partial", "backup")
_AT_FDCWD = -100
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2


class OutDirError(Error, ValueError):
    """An `--out` that cannot be used; the message names it and the fix."""


def _is_within(path, parent):
    return path == parent or parent in path.parents


# The files of a SavedModel (the one folder an export writes), for the exports whose
# report.json does not list every file (bnkeras before the "tree" field).
_UNLISTED_LAYOUT = re.compile(
    r"saved_model/(saved_model\.pb|fingerprint\.pb|keras_metadata\.pb"
    r"|variables/variables\.(index|data-\d+-of-\d+))"
)


def foreign_files(directory, known_files=()):
    """The files under `directory` (any depth) that are not part of a bnkeras export.

    None when `directory` holds no bnkeras export at all (no report.json with the
    export's field); [] when every file is the export's own: listed in the report's
    "tree" (every file it wrote), or for an older report, a top-level name it lists or
    `known_files`, or a file of its SavedModel.
    """
    directory = Path(directory)
    try:
        report = json.loads((directory / REPORT).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(report, dict) or EXPORT_FIELD not in report:
        return None
    files = files_under(directory)
    tree = report.get("tree")
    if isinstance(tree, list):
        allowed = {REPORT, MARKER, *(f for f in tree if isinstance(f, str))}
        return [f for f in files if f not in allowed]
    allowed = {REPORT, MARKER, *known_files, *report.get("files", ())}
    return [f for f in files if f not in allowed and not _UNLISTED_LAYOUT.fullmatch(f)]


def is_export(directory, known_files=()):
    """True if `directory` holds only a bnkeras export: its report.json and its files."""
    return foreign_files(directory, known_files) == []


def check_out_dir(source, out_dir, overwrite, known_files=()):
    """The real path of `out_dir` after checking that the export may write there.

    Raises `OutDirError` for an `--out` that is the source or contains it, that is
    a file, that exists without `overwrite`, or that holds anything but an empty
    directory or a previous bnkeras export.
    """
    out = Path(os.path.realpath(out_dir))
    source = Path(os.path.realpath(source))
    if _is_within(source, out):
        what = "is" if source == out else "contains"
        raise OutDirError(
            f"--out {out_dir} {what} the export's source {source}: an export never replaces "
            f"its source. Received: --out={out_dir}. Choose a new directory, e.g. "
            f"--out {source.parent / (source.stem + '_export') if source.is_file() else source / 'export'}."
        )
    if not out.exists() and not os.path.lexists(out_dir):
        return out
    if not out.is_dir():
        raise OutDirError(
            f"--out {out_dir} exists and is not a directory. Received: --out={out_dir}. "
            "Choose a new directory."
        )
    empty = not any(out.iterdir())
    if not overwrite:
        raise OutDirError(
            f"--out {out_dir} already exists. Received: --out={out_dir}. Choose another --out, "
            "or pass --overwrite to replace a previous export."
        )
    foreign = None if empty else foreign_files(out, known_files)
    if not empty and foreign != []:
        named = ""
        if foreign:
            named = f" ({', '.join(foreign[:5])}{f' and {len(foreign) - 5} more' if len(foreign) > 5 else ''})"
        raise OutDirError(
            f"--out {out_dir} holds files that are not a bnkeras export{named}, and --overwrite "
            f"only replaces an empty directory or a previous export. Received: --out={out_dir}. "
            "Choose another --out, or move those files away."
        )
    return out


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftovers(out):
    pattern = re.compile(rf"^\.{re.escape(out.name)}\.({'|'.join(_TEMP_KINDS)})-(\d+)$")
    if not out.parent.is_dir():
        return
    for entry in out.parent.iterdir():
        match = pattern.match(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        if int(match.group(2)) == os.getpid() or _pid_alive(int(match.group(2))):
            continue
        if (entry / MARKER).is_file() or is_export(entry):
            yield match.group(1), entry


def clean_leftovers(out):
    """Restores or removes what killed exports to `out` left behind (see the module doc)."""
    out = Path(out)
    for kind, entry in sorted(_leftovers(out), key=lambda item: item[0] != "backup"):
        if kind == "backup" and not os.path.lexists(out):
            os.rename(entry, out)
            logger.warning("restored %s from %s (left by an interrupted export)", out, entry.name)
        else:
            shutil.rmtree(entry, ignore_errors=True)
            logger.info("removed %s (left by an interrupted export)", entry)


def make_partial(out):
    """A new, marked temporary directory beside `out` for this process."""
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    (partial / MARKER).write_text(json.dumps({"pid": os.getpid(), "out": str(out)}) + "\n")
    return partial


def _renameat2(old, new, flags):
    """Linux renameat2; raises OSError (ENOSYS/EINVAL where unsupported)."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        raise OSError(errno.ENOSYS, "renameat2 is not available") from None
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(old), _AT_FDCWD, os.fsencode(new), flags) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(old))


def _unsupported(error):
    return error.errno in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP)


def move_into_place(partial, out):
    """Moves the finished `partial` to `out`, replacing a previous export atomically."""
    (partial / MARKER).unlink()  # from here the report.json marks it as ours
    if not os.path.lexists(out):
        try:
            _renameat2(partial, out, _RENAME_NOREPLACE)
            return
        except OSError as error:
            if not _unsupported(error):
                raise
        os.rename(partial, out)
        return
    try:
        _renameat2(partial, out, _RENAME_EXCHANGE)
    except OSError as error:
        if not _unsupported(error):
            raise
        replace_by_renames(partial, out)
        return
    shutil.rmtree(partial, ignore_errors=True)  # now the previous export


def replace_by_renames(partial, out):
    """Replaces `out` without RENAME_EXCHANGE; a kill between the renames is undone later."""
    backup = out.parent / f".{out.name}.backup-{os.getpid()}"
    os.rename(out, backup)
    os.rename(partial, out)
    shutil.rmtree(backup, ignore_errors=True)


@contextlib.contextmanager
def partial_dir(out):
    """Yields a new partial directory for `out` and removes it on any exit."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = make_partial(out)
    try:
        yield partial
    finally:
        shutil.rmtree(partial, ignore_errors=True)
