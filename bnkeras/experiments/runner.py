"""Runs an experiment seed by seed in a work directory, resuming completed seeds.

`DIR/results.json` is written after every seed, so a rerun of the same command
skips the seeds it holds; the claims' verdicts, the summary and the figures are
rewritten at the end. The command only writes files it created: an existing
results.json must be one of its own for the same experiment and settings, and
an existing summary or figure must be listed in it.

results.json holds: `format`, `experiment`, `claim` (the paper's, as text),
`setup` (ours, as text), `settings`, `quick`, `versions`, `machine`;
`protocol` (the experiment's claims, comparisons, preconditions, limitations
and post-hoc choices, as fixed in its module before the runs); `seeds`: per
seed `metrics` (name -> number), `curves` (what was recorded during training),
`wall_seconds` and `load` (the 1-minute load average when the seed ended);
`metrics`: per metric `per_seed`, `mean`, `sd`; `claims`: per claim of the
protocol its measurement (effect, 95% interval, p-values, Holm-adjusted
p-value), its preconditions (each measured, `met` or not) and its `verdict`
(supported, contradicted, inconclusive or precondition not met) with
`verdict_text`; `verdicts` (claim name -> verdict); `result` (ours, as text);
`files` (what the command wrote besides results.json). Non-finite numbers
(diverged runs) are null.
"""

import importlib
import json
import logging
import math
import os
import platform
import time
from pathlib import Path

from bnkeras.experiments import DEFAULT_SEEDS, EXPERIMENTS, ReproduceError, report, stats

logger = logging.getLogger(__name__)

FORMAT = "bnkeras-reproduce/2"
OLD_FORMATS = ("bnkeras-reproduce/1",)
RESULTS = "results.json"
SUMMARY = "summary.md"
MAX_SEEDS = 1000  # seeds 0..N-1; each trains every model of the experiment


def load_experiment(name):
    if name not in EXPERIMENTS:
        raise ReproduceError(
            f"Unknown experiment: valid are {', '.join(EXPERIMENTS)} or all. "
            f"Received: experiment={name!r}"
        )
    return importlib.import_module(f"bnkeras.experiments.{EXPERIMENTS[name]}")


def _versions():
    import keras
    import numpy
    import tensorflow

    import bnkeras

    return {
        "bnkeras": bnkeras.__version__,
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _open_results(workdir, experiment, settings):
    """The stored results of this experiment and settings, or a fresh record."""
    path = workdir / RESULTS
    record = _stored(path, workdir, experiment, settings) if path.exists() else None
    record = record or {"format": FORMAT, "experiment": experiment.NAME, "seeds": {}, "files": []}
    for name in (SUMMARY, *experiment.FIGURES):
        if (workdir / name).exists() and name not in record["files"]:
            raise ReproduceError(
                f"{workdir / name} exists and was not written by `bnkeras reproduce` "
                f"(no {RESULTS} lists it); choose another --workdir. "
                f"Received: workdir={str(workdir)!r}"
            )
    return record


def _stored(path, workdir, experiment, settings):
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = None
    if isinstance(stored, dict) and stored.get("format") in OLD_FORMATS:
        raise ReproduceError(
            f"{path} holds results of an older `bnkeras reproduce` ({stored['format']}), "
            "measured under another protocol; use another --workdir to keep them. "
            f"Received: workdir={str(workdir)!r}"
        )
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise ReproduceError(
            f"{path} was not written by `bnkeras reproduce`; choose another --workdir. "
            f"Received: workdir={str(workdir)!r}"
        )
    if stored.get("experiment") != experiment.NAME or stored.get("settings") != settings:
        raise ReproduceError(
            f"{path} holds results of another experiment or settings "
            f"({stored.get('experiment')}, quick={stored.get('quick')}); use another --workdir "
            f"to keep them. Received: workdir={str(workdir)!r}"
        )
    return stored


def _aggregate(seed_results):
    """metric name -> per-seed values, mean and sd (seeds in numeric order)."""
    ordered = [seed_results[key] for key in sorted(seed_results, key=int)]
    names = [name for name in ordered[0]["metrics"]] if ordered else []
    metrics = {}
    for name in names:
        values = [result["metrics"][name] for result in ordered]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        mean, sd = stats.mean_sd(finite)
        metrics[name] = {"per_seed": values, "mean": mean, "sd": sd}
    return metrics


def _machine():
    """The CPU's model name (Linux), its logical cores and the platform."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [
                line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "platform": platform.platform()}


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _finish(workdir, experiment, record):
    record["metrics"] = _aggregate(record["seeds"])
    per_seed = {name: entry["per_seed"] for name, entry in record["metrics"].items()}
    missing = [name for name in experiment.PROTOCOL.metric_names() if name not in per_seed]
    if missing and record["seeds"]:
        raise RuntimeError(f"{experiment.NAME}: the protocol reads metrics no seed has: {missing}")
    record["protocol"] = experiment.PROTOCOL.to_json()
    record["claims"] = stats.evaluate(experiment.PROTOCOL, per_seed)
    record["verdicts"] = {claim["name"]: claim["verdict"] for claim in record["claims"]}
    record["result"] = experiment.result_text(record)
    figures = experiment.plot(record, workdir)
    record["files"] = sorted({*record["files"], SUMMARY, *figures})
    report.atomic_write_text(workdir / RESULTS, report.to_json(record))
    report.atomic_write_text(workdir / SUMMARY, report.summary_markdown(record))


def reproduce(name, workdir, seeds=DEFAULT_SEEDS, quick=False):
    """Runs experiment `name` for seeds 0..`seeds`-1 in `workdir`, skipping completed seeds.

    Args:
        name: One of `bnkeras.experiments.EXPERIMENTS`.
        workdir: Directory for results.json, summary.md and the figures (created
            if missing).
        seeds: Number of seeds (>= 1).
        quick: Tiny sizes (a few seconds; for tests), not a measurement.

    Returns:
        The results record (as written to results.json).
    """
    experiment = load_experiment(name)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= MAX_SEEDS:
        raise ReproduceError(
            f"--seeds must be an integer in [1, {MAX_SEEDS}]. Received: seeds={seeds!r}"
        )
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise ReproduceError(f"--workdir must be a directory. Received: workdir={str(workdir)!r}")
    settings = {**experiment.DEFAULT, **(experiment.QUICK if quick else {})}
    settings = json.loads(json.dumps(settings))  # as stored in JSON
    workdir.mkdir(parents=True, exist_ok=True)
    record = _open_results(workdir, experiment, settings)
    record.update(
        claim=experiment.CLAIM,
        setup=experiment.setup_text(settings),
        settings=settings,
        quick=bool(quick),
        versions=_versions(),
        machine=_machine(),
    )
    for seed in range(seeds):
        if str(seed) in record["seeds"]:
            logger.info("%s: seed %d already done (in %s), skipped", name, seed, RESULTS)
            continue
        logger.info("%s: seed %d of %d", name, seed + 1, seeds)
        start = time.perf_counter()
        result = experiment.run_seed(seed, settings)
        result["wall_seconds"] = round(time.perf_counter() - start, 2)
        result["load"] = _load()
        record["seeds"][str(seed)] = result
        report.atomic_write_text(workdir / RESULTS, report.to_json(record))
        logger.info("%s: seed %d done in %.1f s", name, seed, result["wall_seconds"])
    _finish(workdir, experiment, record)
    verdicts = ", ".join(f"{claim}: {verdict}" for claim, verdict in record["verdicts"].items())
    logger.info("%s: %s; results in %s", name, verdicts, workdir)
    return record


def reproduce_all(workdir, seeds=DEFAULT_SEEDS, quick=False):
    """Every experiment, each in `workdir/NAME`, and `workdir/summary.md`: one row each.

    Returns:
        experiment name -> its results record.
    """
    workdir = Path(workdir)
    summary = workdir / SUMMARY
    if summary.exists() and not summary.read_text().startswith(report.ALL_MARKER):
        raise ReproduceError(
            f"{summary} exists and was not written by `bnkeras reproduce all`; choose another "
            f"--workdir. Received: workdir={str(workdir)!r}"
        )
    records = {
        name: reproduce(name, workdir / name, seeds=seeds, quick=quick) for name in EXPERIMENTS
    }
    report.atomic_write_text(summary, report.all_summary_markdown(records))
    return records
