"""What the benchmark scripts share: the output file (the one writer of docs/benchmarks/),
repeated runs and their ranges, the machine line and the compile step.

Every script writes its results to a markdown file (`--out`, default
`docs/benchmarks/<name>.md`, which the docs include) through `Report`: a first line with
the machine (device, CPU model and cores), the versions, the date, the load average before
and after, the number of runs, then the exact command line, then the script's tables. The
same text goes to stdout. `--runs N` repeats the whole measurement N times in the process
(after one compile and warm-up) and the tables show each ratio's range over the runs.

The scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path`. Nothing
here imports TensorFlow or JAX at module level: bench_jax runs without TensorFlow.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks"


def add_output_arguments(parser: argparse.ArgumentParser, name: str, runs: bool = True) -> None:
    """`--out` (default docs/benchmarks/<name>.md) and, for timing scripts, `--runs`."""
    parser.add_argument(
        "--out",
        type=Path,
        default=DOCS / f"{name}.md",
        help=f"markdown file to write (default docs/benchmarks/{name}.md)",
    )
    if runs:
        parser.add_argument(
            "--runs",
            type=int,
            default=1,
            help="repeat the whole measurement N times; the tables show each ratio's range",
        )


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device() -> str:
    """The accelerator, else the CPU's model name (from /proc/cpuinfo) and core count."""
    cpu = f"CPU ({cpu_name()}, {os.cpu_count()} cores)"
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    if backend == "jax" and "jax" in sys.modules:
        import jax

        found = jax.devices()[0]
        return cpu if found.platform == "cpu" else f"{found.platform.upper()} ({found.device_kind})"
    if "tensorflow" in sys.modules:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            names = [
                tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in gpus
            ]
            return f"GPU ({', '.join(names)})"
    return cpu


def versions(packages: Sequence[str] = (), commit: str | None = None) -> str:
    """The versions of the Keras backend's library and Keras (when imported), of `packages`
    (distribution names, for what the script's child processes use), bnkeras and Python."""
    from importlib import metadata

    parts = []
    if "keras" in sys.modules:  # the backend's library, then Keras
        keras = sys.modules["keras"]
        backend = keras.config.backend()
        labels = {"tensorflow": "TensorFlow", "jax": "JAX", "torch": "PyTorch"}
        if backend in sys.modules:
            version = getattr(sys.modules[backend], "__version__", "?")
            parts.append(f"{labels.get(backend, backend)} {version}")
        parts.append(f"Keras {keras.__version__} ({backend} backend)")
    for package in packages:  # "a|b": the first of a and b installed
        for name in package.split("|"):
            try:
                parts.append(f"{name} {metadata.version(name)}")
                break
            except metadata.PackageNotFoundError:
                continue
        else:
            parts.append(f"{package} not installed")
    import bnkeras

    parts.append(f"bnkeras {bnkeras.__version__} ({commit or _commit()})")
    parts.append(f"Python {platform.python_version()}")
    return ", ".join(parts)


def _commit() -> str:
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "no git commit"
    return f"commit {commit}{' with local changes' if dirty else ''}"


def command_line() -> str:
    """The exact command that ran this script, as typed from the repository's top."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(ROOT)
    except ValueError:
        shown = script
    return shlex.join(["python", str(shown), *sys.argv[1:]])


class Report:
    """The script's output file: created when the measurement starts (the load average
    before), written once at the end with `write`."""

    def __init__(self, out: Path, runs: int = 1, packages: Sequence[str] = ()):
        self.out = Path(out)
        self.runs = runs
        self.packages = packages
        self.commit = _commit()  # the code measured, before the run (files may change meanwhile)
        self.load_before = os.getloadavg()[0]
        self.started = datetime.datetime.now()

    def write(self, title: str, body: str) -> str:
        """Writes `title`, the machine line, the command line and `body` to the file and
        stdout; returns the text."""
        load_after = os.getloadavg()[0]
        minutes = (datetime.datetime.now() - self.started).total_seconds() / 60
        runs = f"{self.runs} runs" if self.runs > 1 else "1 run"
        text = (
            f"<!-- written by {Path(sys.argv[0]).name}; do not edit: rerun the command below -->\n"
            f"{title}\n\n"
            f"Measured on {device()}; {versions(self.packages, self.commit)}; {self.started.date().isoformat()}; "
            f"load average {self.load_before:.2f} before, {load_after:.2f} after "
            f"({minutes:.0f} min); {runs}.\n\n"
            f"Command: `{command_line()}`\n\n"
            f"{body.rstrip()}\n"
        )
        print("\n" + text, flush=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(text)
        return text


def repeat(runs: int, measure: Callable[[], object]) -> list:
    """`measure()` called `runs` times, each call one whole measurement."""
    results = []
    for index in range(runs):
        if runs > 1:
            print(f"run {index + 1} of {runs}", file=sys.stderr, flush=True)
        results.append(measure())
    return results


def span(values: Sequence[float], digits: int = 2, suffix: str = "x") -> str:
    """One value as `1.23x`; several as their range `1.19-1.26x` (min-max)."""
    low, high = min(values), max(values)
    if f"{low:.{digits}f}" == f"{high:.{digits}f}":
        return f"{low:.{digits}f}{suffix}"
    return f"{low:.{digits}f}-{high:.{digits}f}{suffix}"


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def compile_for_training(model, jit_compile=False):
    """SGD with momentum on sparse-label logits: the same train step for every candidate."""
    import keras

    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model
