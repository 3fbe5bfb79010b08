"""Output of the `bnkeras` command: its log handler, one-line warnings, a quiet TensorFlow.

Library modules log through `logging.getLogger(__name__)` (all under the `bnkeras`
logger) and warn through `warnings`; `command_output` makes the command print those
log messages bare on stdout and each warning as one `warning: ...` line on stderr.

TensorFlow writes C++ log lines straight to the stderr file descriptor. Most obey
`TF_CPP_MIN_LOG_LEVEL`; the ones written while TensorFlow is imported (before
absl's logging is initialized) do not, so `import_tensorflow_quietly` imports it
with file descriptor 2 captured and passes every other line through.
"""

import contextlib
import logging
import os
import re
import sys
import warnings

# Set with os.environ.setdefault before TensorFlow is imported: a user's value wins.
# (absl reads no environment variable for its level: the import-time lines are filtered.)
TF_QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "3",  # hides C++ INFO, WARNING and ERROR lines; errors still raise
}
# A TF C++ log line (`I0000 00:00:1795433902.608290   11155 port.cc:153] ...`), absl's
# notice before its initialization, and the continuation of cpu_feature_guard's line.
TF_LOG_LINE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|To enable the following instructions: .* rebuild TensorFlow)"
)


# Depth of `command_output` blocks: above 0 while the `bnkeras` command runs. Process-wide
# measures (file descriptors 1 and 2 sent to a log file) are taken only then; a library call
# from a user's program leaves the process as it found it.
_command_depth = 0


def in_command():
    """True while the `bnkeras` command runs (inside `command_output`)."""
    return _command_depth > 0


@contextlib.contextmanager
def command_output(verbose=False):
    """Prints `bnkeras` log messages on stdout and warnings as one line on stderr.

    Args:
        verbose: Also print DEBUG messages, show warnings in Python's own format and
            leave TensorFlow's logging alone.

    The handler, levels and `warnings.showwarning` are restored on exit (the command
    can run inside another program, e.g. a test); the TensorFlow environment
    variables set here stay, as TensorFlow reads them once.
    """
    logger = logging.getLogger("bnkeras")
    tf_logger = logging.getLogger("tensorflow")
    saved_levels = (logger.level, tf_logger.level)
    saved = (logger.propagate, warnings.showwarning)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    if not verbose:
        warnings.showwarning = _one_line_warning
        for name, value in TF_QUIET_ENVIRONMENT.items():
            os.environ.setdefault(name, value)
        tf_logger.setLevel(logging.ERROR)
    global _command_depth
    _command_depth += 1
    try:
        yield
    finally:
        _command_depth -= 1
        logger.removeHandler(handler)
        logger.propagate, warnings.showwarning = saved
        logger.setLevel(saved_levels[0])
        tf_logger.setLevel(saved_levels[1])


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=file or sys.stderr)


def import_tensorflow_quietly(verbose=False):
    """Imports TensorFlow without its import-time C++ log lines (unless asked for them).

    The lines are kept with `verbose`, and when `TF_CPP_MIN_LOG_LEVEL` is unset or 0
    (a user's setting: `command_output` sets it otherwise).
    """
    if verbose or "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") == "0":
        import tensorflow  # noqa: F401

        return
    with _stderr_without_tf_log_lines():
        import tensorflow  # noqa: F401


@contextlib.contextmanager
def _stderr_without_tf_log_lines():
    """Captures file descriptor 2; on exit writes back every line but TF's log lines."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [
                line
                for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                if not TF_LOG_LINE.match(line)
            ]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
