"""Fault injection for the fault tests: a real bnkeras process paused at a named moment,
for the test to kill or signal it there. The product has no test hooks: this module
wraps the product's functions from outside, in the test's subprocess only.

`command(point, flag, *argv)` is the command line of such a process:
`python -m tests._faults POINT FLAG SECONDS ARGV...`, where ARGV is either the
arguments of the `bnkeras` command or `-c SCRIPT ARGS...`. On reaching POINT the
process writes POINT to the file FLAG and sleeps SECONDS. The points:

- "epoch E step S": after training step S of epoch E (both from 1) of `bnkeras train`;
- "after_write": an export's formats are written into its partial directory;
- "before_move": the finished partial export is about to be moved to --out;
- "after_exchange": the partial export and the previous one have been swapped;
- "after_backup": without RENAME_EXCHANGE, the previous export was renamed to its backup.

A point that is never reached leaves the process running to its end without a flag,
which the tests report as a failure.
"""

import os
import re
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent  # the checkout: `tests` importable from it


def command(point, flag, *argv, seconds=120):
    """The argv of a process running `argv` (bnkeras arguments or `-c SCRIPT ...`) that
    pauses `seconds` at `point`, after writing it to the file `flag`."""
    return [sys.executable, "-m", "tests._faults", point, str(flag), str(seconds), *map(str, argv)]


def environment(**extra):
    """`os.environ` with this checkout importable (for `-m tests._faults`) and `extra`."""
    path = os.pathsep.join(p for p in (str(_ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def _watch_stop_signals():
    """A list that gets an item when the product's command sees a stop signal (wraps
    `bnkeras._signals._Command.stop`, the handler of SIGTERM and SIGHUP, and SIGINT's)."""
    import signal

    from bnkeras import _signals

    stop = _signals._Command.stop
    if not getattr(stop, "_watched", None):

        def watched_stop(self, signum):
            _SEEN.append(signum)
            return stop(self, signum)

        watched_stop._watched = True
        _signals._Command.stop = watched_stop
    previous = signal.getsignal(signal.SIGINT)
    if callable(previous) and not getattr(previous, "_watched", None):

        def watched_sigint(signum, frame):
            _SEEN.append(signum)
            return previous(signum, frame)

        watched_sigint._watched = True
        signal.signal(signal.SIGINT, watched_sigint)
    return _SEEN


_SEEN = []  # stop signals seen by the command in this process


def install(point, flag, seconds):
    """Wraps the product function after (or before) which `point` lies."""

    def pause():
        # Sleeps `seconds`, or less: until a stop signal reached the command (a test that
        # signals at this point must not lose the race to a short pause on a busy machine).
        signalled = _watch_stop_signals()
        Path(flag).write_text(point)
        deadline = time.monotonic() + float(seconds)
        while time.monotonic() < deadline and not signalled:
            time.sleep(0.02)

    step = re.fullmatch(r"epoch (\d+) step (\d+)", point)
    if step:
        _pause_in_training(int(step[1]), int(step[2]), pause)
    elif point == "after_write":
        from bnkeras.export import pipeline

        write = pipeline._write_formats

        def write_then_pause(*args, **kwargs):
            written = write(*args, **kwargs)
            pause()
            return written

        pipeline._write_formats = write_then_pause
    elif point in ("before_move", "after_exchange"):
        from bnkeras.export import outdir

        rename = outdir._renameat2
        moves = []

        def paused_rename(old, new, flags):
            moves.append(flags)
            if point == "before_move" and len(moves) == 1:
                pause()  # the marker is gone; nothing has moved yet
            done = rename(old, new, flags)
            if point == "after_exchange" and flags == outdir._RENAME_EXCHANGE:
                pause()
            return done

        outdir._renameat2 = paused_rename
    elif point == "after_backup":
        from bnkeras.export import outdir

        outdir.os = _OsPausingAfterBackup(pause)
    else:
        raise ValueError(f"unknown pause point {point!r}")


class _OsPausingAfterBackup:
    """`os` for bnkeras.export.outdir: pauses after renaming an export to its backup."""

    def __init__(self, pause):
        self._pause = pause

    def __getattr__(self, name):
        return getattr(os, name)

    def rename(self, old, new):
        os.rename(old, new)
        if ".backup-" in Path(new).name:
            self._pause()


def _pause_in_training(epoch, step, pause):
    import keras

    from bnkeras.training import trainer

    class PauseAtStep(keras.callbacks.Callback):
        def on_epoch_begin(self, index, logs=None):
            self.epoch = index + 1

        def on_train_batch_end(self, batch, logs=None):
            if (self.epoch, batch + 1) == (epoch, step):
                pause()

    fit_progress = trainer.fit_progress

    def with_pause(*args, **kwargs):
        verbose, callbacks = fit_progress(*args, **kwargs)
        return verbose, [*callbacks, PauseAtStep()]

    trainer.fit_progress = with_pause


def main(argv):
    point, flag, seconds, *rest = argv
    if rest[:1] == ["-c"]:
        sys.argv = ["-c", *rest[2:]]
        install(point, flag, seconds)
        exec(compile(rest[1], "<string>", "exec"), {"__name__": "__main__"})
        return 0
    sys.argv = ["bnkeras", *rest]  # as the console script starts
    from bnkeras import cli

    # TensorFlow imported as the command imports it (the collector off, then frozen),
    # before `install` imports the modules it wraps.
    cli._import_tensorflow_and_layers()
    install(point, flag, seconds)
    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
