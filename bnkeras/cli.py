"""The `bnkeras` command line: parses arguments and calls the library.

Each subcommand is a module (or object) with `add_arguments(parser)` and
`run(args) -> exit code`, listed in `_SUBCOMMANDS`. Those modules import nothing
heavy at module level: the parser is built, and `--help`, `--version` and argument
errors are answered, without importing TensorFlow. TensorFlow is imported (quietly)
only once a subcommand runs.

`main(argv)` returns the exit status, also for --help, --version and usage errors
(argparse's own exit is caught). Exit status: 0 done; 2 bad input (a `bnkeras.Error`, printed as one line); 1 a bug
(any other exception): one line naming the file where the traceback was saved
(`bnkeras-COMMAND-traceback-*.txt` in the temporary directory, `tempfile.gettempdir()`),
and with `--verbose` the traceback itself. Subcommands use 1 for a failed check
(an export that fails verification) and 128 + N for signal N (130: Ctrl-C) too.
"""

import argparse
import gc
import importlib
import sys
import tempfile
import traceback

import bnkeras
from bnkeras import _logging, _signals
from bnkeras.errors import Error

# name -> ("module[:attribute]", help); the target provides add_arguments(parser) and run(args).
_SUBCOMMANDS = {
    "train": ("bnkeras.training.cli:train", "train (or resume) a classifier in a work directory"),
    "evaluate": (
        "bnkeras.training.cli:evaluate",
        "loss, top-1 (and top-5 for more than 5 classes) of a run or a .keras model",
    ),
    "export": (
        "bnkeras.export.cli",
        "fold BN and export verified .keras / SavedModel / ONNX models",
    ),
    "reproduce": ("bnkeras.experiments.cli", "re-measure the batch-normalization papers' claims"),
}
_VERBOSE_HELP = "print debug messages, warnings in full and TensorFlow's own logs"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bnkeras",
        description="Batch normalization for Keras 3: train with BN / renorm / ghost BN, "
        "fold BN and export verified models.",
    )
    parser.add_argument("--version", action="version", version=f"bnkeras {bnkeras.__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=_VERBOSE_HELP)
    # Subcommands accept --verbose too; SUPPRESS keeps a value given before the subcommand.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=_VERBOSE_HELP
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (target, help_text) in _SUBCOMMANDS.items():
        module_name, _, attribute = target.partition(":")
        module = importlib.import_module(module_name)
        if attribute:
            module = getattr(module, attribute)
        sub_parser = sub.add_parser(name, help=help_text, description=help_text, parents=[verbose])
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv=None):
    parser = build_parser()
    # --help, --version and usage lines print while parsing: a standard output that
    # fails (closed, full) ends them as it ends a command (141, or 2 and one line).
    # The stop signals get their handlers with the command below, not here: a signal
    # sent once they are installed then always stops the command.
    args = None
    with _signals.command(None, signals=False) as parsing:
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # argparse's exit after --help, --version, bad usage
            parsing.code = 0 if done.code is None else done.code
        else:
            if args.command is None:
                parser.print_help()
    if args is None or args.command is None or parsing.code:
        return parsing.code
    # SIGTERM/SIGHUP act as Ctrl-C; a stop or a failed stdout sets the exit code (_signals).
    with _signals.command(args.command) as command, _logging.command_output(args.verbose):
        try:
            _import_tensorflow_and_layers(verbose=args.verbose)
            command.code = args._module.run(args)
        except Error as error:  # bad input, judged where it was read
            print(f"bnkeras {args.command}: error: {error}", file=sys.stderr)
            command.code = 2
        except Exception as error:  # anything else is a bug, never "bad input"
            command.code = report_bug(args.command, error, verbose=args.verbose, argv=argv)
    return command.code


def _import_tensorflow_and_layers(verbose=False):
    """TensorFlow, Keras and the layers (registered with Keras: saved models load).

    A first import runs with the garbage collector off: it creates ~350,000 objects
    that live as long as the process, and collecting as they came took ~20% of the
    import's CPU (~1 s). They are then frozen (`gc.freeze`), out of the scans of the
    collections that the command's own work triggers. (A process that imported
    TensorFlow already, such as a program calling `main`, keeps its collector as is.)
    """
    if "tensorflow" in sys.modules:
        _logging.import_tensorflow_quietly(verbose=verbose)
        importlib.import_module("bnkeras.layers")
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        _logging.import_tensorflow_quietly(verbose=verbose)
        importlib.import_module("bnkeras.layers")
    finally:
        if enabled:
            gc.enable()
    gc.freeze()


def report_bug(command, error, verbose=False, argv=None):
    """Saves the traceback of `error` (and the command line `argv`) to a file, prints one
    line naming it; returns the exit code 1."""
    argv = sys.argv[1:] if argv is None else argv
    text = "".join(traceback.format_exception(error))
    if verbose:
        print(text, end="", file=sys.stderr)
    first = (str(error).strip().splitlines() or [""])[0][:200]
    try:
        handle, path = tempfile.mkstemp(prefix=f"bnkeras-{command}-traceback-", suffix=".txt")
        with open(handle, "w") as file:
            file.write(f"bnkeras {bnkeras.__version__}: bnkeras {' '.join(argv)}\n{text}")
        where = f"the traceback is saved in {path}"
    except OSError as save_error:
        where = f"the traceback could not be saved ({save_error.strerror or save_error})"
        if not verbose:
            print(text, end="", file=sys.stderr)
    print(
        f"bnkeras {command}: internal error ({type(error).__name__}: {first}): a bug in bnkeras, "
        f"not a problem with your input; {where} (--verbose prints it); please report it.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
