"""How a `bnkeras` command ends when it is stopped or cannot print.

`command(name)` wraps one command of the CLI process (process-wide measures: the
handlers and `sys.stdout` come back on exit, so a library call never sees them):

- SIGTERM (a cluster's preemption: Kubernetes, SLURM) and SIGHUP (a closed terminal)
  act as Ctrl-C: the current SIGINT handler runs (the trainer's stops at the next
  batch boundary and keeps the last checkpoint; elsewhere `KeyboardInterrupt`
  unwinds, and the export's partial directory is removed on the way). The command
  prints one line, `bnkeras CMD: interrupted by SIGTERM; ...`, and exits 128 +
  the signal (143, 129; Ctrl-C 130). A signal ignored when the command started
  (`nohup`) stays ignored.
- A closed standard output (`bnkeras train ... | head -1`) stops the command as
  SIGPIPE stops other Unix tools: the rest of its output goes to /dev/null, it stops
  as for Ctrl-C and exits 141 (128 + SIGPIPE) without a word.
- Any other failed write to standard output (a full disk, /dev/full) does not stop
  the work, whose files are written as usual, but the command then exits 2 with one
  line on stderr: its output was lost.
"""

import _thread
import contextlib
import errno
import os
import signal
import sys
import threading

# Signals that stop a command as Ctrl-C does (SIGHUP does not exist on Windows).
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))
SIGPIPE = 13  # its number on Linux and macOS: a closed stdout exits 128 + 13 = 141


class _Command:
    def __init__(self, name):
        self.name = name
        self.code = 0
        self.signum = None  # the first stop: a signal number, or SIGPIPE for a closed stdout
        self.write_error = None  # a failed write to stdout other than a closed pipe

    @property
    def prog(self):
        """What its lines start with: `bnkeras NAME`, or `bnkeras` before a command."""
        return f"bnkeras {self.name}" if self.name else "bnkeras"

    def on_signal(self, signum, frame):
        self.stop(signum)

    def stop(self, signum):
        """Records `signum` and does what Ctrl-C does (the current SIGINT handler)."""
        if self.signum is None:
            self.signum = signum
        if threading.current_thread() is not threading.main_thread():
            _thread.interrupt_main()  # the SIGINT handler, run by the main thread
            return
        handler = signal.getsignal(signal.SIGINT)
        if callable(handler):
            handler(signal.SIGINT, None)
        else:  # SIGINT ignored or default: a stop signal still stops
            raise KeyboardInterrupt

    def interrupted(self, interrupt):
        """The exit code of a command stopped by `interrupt`, after its one line."""
        signum = self.signum or signal.SIGINT
        if signum == SIGPIPE:
            return 128 + SIGPIPE
        text = str(interrupt) or "interrupted"
        if signum != signal.SIGINT:
            name = signal.Signals(signum).name
            if text.startswith("interrupted"):
                text = f"interrupted by {name}{text[len('interrupted') :]}"
            else:
                text = f"{text} ({name})"
        _say(f"{self.prog}: {text}")
        return 128 + signum


class _GuardedOutput:
    """`sys.stdout` during a command: a write that fails sends the stream to /dev/null
    and tells the command (a closed pipe stops it; another error is remembered)."""

    def __init__(self, stream, command):
        self._stream = stream
        self._command = command
        self._lost = False

    def write(self, text):
        if not self._lost:
            try:
                return self._stream.write(text)
            except OSError as error:
                self._failed(error)
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if not self._lost:
            try:
                self._stream.flush()
            except OSError as error:
                self._failed(error)

    def __getattr__(self, name):  # fileno, isatty, encoding, ...
        return getattr(self._stream, name)

    def _failed(self, error):
        self._lost = True
        _to_devnull(self._stream)
        if isinstance(error, BrokenPipeError) or error.errno == errno.EPIPE:
            self._command.stop(SIGPIPE)
        else:
            self._command.write_error = error


def _to_devnull(stream):
    """Points the file descriptor of `stream` at /dev/null: its buffered text and the
    interpreter's last flush at exit then go nowhere instead of failing again."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (e.g. a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _say(line):
    with contextlib.suppress(OSError):  # stderr gone too (SIGHUP of a closed terminal)
        print(line, file=sys.stderr, flush=True)


@contextlib.contextmanager
def command(name, signals=True):
    """Runs the `bnkeras NAME` command inside (NAME None: the parsing of the command
    line, which prints --help and --version): yields an object whose `code` the command
    sets; stops and failed output set it as the module docstring says. With `signals`
    False only the output is guarded (SIGTERM and SIGHUP keep their handlers)."""
    state = _Command(name)
    previous = {}
    if signals and threading.current_thread() is threading.main_thread():
        for signum in STOP_SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, state.on_signal)
    stdout = sys.stdout
    sys.stdout = _GuardedOutput(stdout, state)
    try:
        try:
            yield state
        finally:
            sys.stdout.flush()  # text still buffered fails here (or stops the command)
    except KeyboardInterrupt as interrupt:
        state.code = state.interrupted(interrupt)
    finally:
        sys.stdout = stdout
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if state.signum == SIGPIPE:  # the stop came after the command's last check
        state.code = 128 + SIGPIPE
    elif state.write_error is not None and state.code == 0:
        reason = state.write_error.strerror or state.write_error
        _say(
            f"{state.prog}: error: could not write to standard output ({reason}): its output is lost"
        )
        state.code = 2
