"""`bnkeras reproduce`: the parser (no TensorFlow import) and the runner (imports on run)."""

import logging
import sys

from bnkeras.errors import Error
from bnkeras.experiments import DEFAULT_SEEDS, EXPERIMENTS


def add_arguments(parser):
    parser.add_argument(
        "experiment", choices=[*EXPERIMENTS, "all"], help="which experiment (all: each in DIR/NAME)"
    )
    parser.add_argument(
        "--workdir", required=True, help="results directory; rerunning skips completed seeds"
    )
    parser.add_argument(
        "--seeds", type=int, help=f"number of seeds (default: {DEFAULT_SEEDS}, or 1 with --quick)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, 1 seed unless --seeds: a smoke test"
    )


def _show_progress():
    root = logging.getLogger("bnkeras")
    if not root.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)


def run(args):
    seeds = args.seeds if args.seeds is not None else (1 if args.quick else DEFAULT_SEEDS)
    _show_progress()
    try:
        from bnkeras.experiments import runner

        if args.experiment == "all":
            runner.reproduce_all(args.workdir, seeds=seeds, quick=args.quick)
        else:
            runner.reproduce(args.experiment, args.workdir, seeds=seeds, quick=args.quick)
    except Error as error:
        print(f"bnkeras reproduce: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM, SIGHUP: printed by bnkeras/_signals.py
        raise KeyboardInterrupt(
            f"interrupted; the finished seeds are kept in {args.workdir}: rerun the same "
            "command to go on"
        ) from None
    return 0
