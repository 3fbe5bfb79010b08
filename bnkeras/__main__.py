"""`python -m bnkeras` is the `bnkeras` command."""

import sys

from bnkeras.cli import main

if __name__ == "__main__":
    code = main()
    # CPython remembers a KeyboardInterrupt that left code run by exec() or eval() of a
    # string (namedtuple, dataclasses: a stop signal during an import can hit one) even
    # when the command caught it, and then ends `python -m` by SIGINT instead of with
    # the command's status (Modules/main.c, since bpo-1054041; a script run from its
    # file is not affected). An exec() of a string clears that flag first: here, with
    # nothing to run. Test: tests/test_cli.py.
    exec("")  # noqa: S102
    sys.exit(code)
