"""`python -m bnkeras` is the `bnkeras` command."""

import sys

from bnkeras.cli import main

if __name__ == "__main__":
    sys.exit(main())
