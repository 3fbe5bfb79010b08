"""The `bnkeras` command line: parses arguments and calls the library.

Each subcommand is a module (or object) with `add_arguments(parser)` and
`run(args) -> exit code`, listed in `_SUBCOMMANDS`. Those modules import nothing
heavy at module level: the parser is built, and `--help`, `--version` and argument
errors are answered, without importing TensorFlow. TensorFlow is imported (quietly)
only once a subcommand runs.
"""

import argparse
import importlib
import sys

import bnkeras
from bnkeras import _logging, _signals

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
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    # SIGTERM/SIGHUP act as Ctrl-C; a stop or a failed stdout sets the exit code (_signals).
    with _signals.command(args.command) as command, _logging.command_output(args.verbose):
        _logging.import_tensorflow_quietly(verbose=args.verbose)
        importlib.import_module("bnkeras.layers")  # registered with Keras: saved models load
        command.code = args._module.run(args)
    return command.code


if __name__ == "__main__":
    sys.exit(main())
