"""Test hook: named moments at which the fault tests kill a real bnkeras process.

With `BNKERAS_TEST_PAUSE_AT=<point>` in the environment, the process reaching
`pause(point)` writes the point to the file `BNKERAS_TEST_PAUSE_FILE` and sleeps
`BNKERAS_TEST_PAUSE_SECONDS` (default 120), for the test to kill it there. Without
the variable (outside the tests) it does nothing.
"""

import os
import time
from pathlib import Path

_AT = "BNKERAS_TEST_PAUSE_AT"


def requested():
    """True when this process was asked to pause at some point."""
    return bool(os.environ.get(_AT))


def pause(point):
    if os.environ.get(_AT) != point:
        return
    Path(os.environ["BNKERAS_TEST_PAUSE_FILE"]).write_text(point)
    time.sleep(float(os.environ.get("BNKERAS_TEST_PAUSE_SECONDS", "120")))
