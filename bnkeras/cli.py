"""The `bnkeras` command line: parses arguments and calls the library.

Subcommands register themselves in `_SUBCOMMANDS`; each module is imported only
when its subcommand runs, so `bnkeras --help` stays fast.
"""

import argparse
import sys

import bnkeras

# name -> (module, help). The module provides `add_arguments(parser)` and `run(args)`.
_SUBCOMMANDS = {
    "export": (
        "bnkeras.export.cli",
        "fold BN and export verified .keras / SavedModel / ONNX models",
    ),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="bnkeras",
        description="Batch normalization for Keras 3: train with BN / renorm / ghost BN, "
        "fold BN and export verified models.",
    )
    parser.add_argument("--version", action="version", version=f"bnkeras {bnkeras.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in _SUBCOMMANDS.items():
        module = __import__(module_name, fromlist=["add_arguments"])
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args._module.run(args)


if __name__ == "__main__":
    sys.exit(main())
