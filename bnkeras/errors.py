"""`bnkeras.Error`: the base class of the errors bnkeras raises for bad input.

Every error that says "your input cannot be used, and here is why" derives from
`Error`: a bad config key, a work directory that holds another run, a dataset
that is not there, a model file that cannot be exported, a wrong argument to a
public function. The `bnkeras` command prints such an error as one line and
exits with status 2. Any other exception is a bug in bnkeras (or in a library
it calls): the command exits with status 1, saves the traceback to a file and
names it (`--verbose` prints it too).

The subclasses keep the built-in base they had (`ValueError`, `RuntimeError`), so
`except ValueError` in existing code still catches them. This module imports
nothing: `import bnkeras.errors` is cheap.
"""


class Error(Exception):
    """Bad input to bnkeras: the message names the input, the value and the fix."""


__all__ = ["Error"]
