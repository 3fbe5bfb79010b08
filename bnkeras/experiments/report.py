"""results.json, summary.md and figures of an experiment's work directory."""

import json
import math

import numpy as np
from matplotlib.figure import Figure

from bnkeras.training.files import atomic_write_text

__all__ = [
    "accuracy_bars",
    "all_summary_markdown",
    "atomic_write_text",
    "figure",
    "mean_band",
    "means",
    "save_figure",
    "seed_curves",
    "summary_markdown",
    "to_json",
]


def _finite_or_none(value):
    if isinstance(value, dict):
        return {key: _finite_or_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def to_json(record):
    """JSON text of `record`; NaN and infinities (diverged runs) become null."""
    return json.dumps(_finite_or_none(record), indent=1, allow_nan=False) + "\n"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _number(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def _mean_sd(entry):
    if entry["mean"] is None:
        return "n/a"
    if entry["sd"] is None:
        return _number(entry["mean"])
    return f"{_number(entry['mean'])} ± {_number(entry['sd'])}"


def summary_markdown(record):
    """The summary table of an experiment: claim, setup, result, verdict, then details."""
    seeds = sorted(record["seeds"], key=int)
    wall = sum(record["seeds"][s]["wall_seconds"] for s in seeds)
    mode = "quick (tiny sizes: not a measurement)" if record["quick"] else "default"
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    lines = [
        f"# `bnkeras reproduce {record['experiment']}`",
        "",
        "| | |",
        "|---|---|",
        f"| Paper's claim | {_cell(record['claim'])} |",
        f"| Our setup | {_cell(record['setup'])} |",
        f"| Our result | {_cell(record['result'])} |",
        f"| Verdict | {_cell(record['verdict'])} |",
        "",
        f"Mode {mode}; {len(seeds)} seed(s); {wall:.0f} s of training in total; {versions}.",
        "",
        "| metric | mean ± sd over seeds | per seed |",
        "|---|---|---|",
    ]
    for name, entry in record["metrics"].items():
        per_seed = ", ".join(_number(v) for v in entry["per_seed"])
        lines.append(f"| {name} | {_mean_sd(entry)} | {per_seed} |")
    lines += [
        "",
        "| comparison (a - b) | effect | effect / seed sd | Welch t | df | p | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in record["comparisons"]:
        lines.append(
            f"| {c['label']} | {_number(c['effect'])} | {_number(c['effect_over_spread'], 2)} "
            f"| {_number(c['t'], 2)} | {_number(c['df'], 1)} | {_number(c['p'], 3)} "
            f"| {c['verdict']} |"
        )
    lines.append("")
    lines += [f"![{name}]({name})" for name in record["files"] if name.endswith(".png")]
    return "\n".join(lines) + "\n"


ALL_MARKER = "<!-- written by `bnkeras reproduce all` -->"


def all_summary_markdown(records):
    """One table row per experiment (claim, setup, result, verdict), linking to its directory."""
    lines = [
        ALL_MARKER,
        "# `bnkeras reproduce all`",
        "",
        "| experiment | paper's claim | our setup | our result | verdict | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for name, record in records.items():
        lines.append(
            f"| [{name}]({name}/summary.md) | {_cell(record['claim'])} | "
            f"{_cell(record['setup'])} | {_cell(record['result'])} | "
            f"{_cell(record['verdict'])} | {len(record['seeds'])} |"
        )
    return "\n".join(lines) + "\n"


def figure(columns=1, width=5.0, height=3.6):
    """A matplotlib Figure with `columns` axes side by side (no pyplot, no global backend)."""
    fig = Figure(figsize=(width * columns, height), layout="constrained")
    axes = fig.subplots(1, columns, squeeze=False)[0]
    return fig, list(axes)


def save_figure(fig, workdir, name):
    """Saves `fig` as workdir/name (PNG, atomically) and returns `name`."""
    tmp = workdir / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=110)
    tmp.replace(workdir / name)
    return name


def mean_band(ax, steps, curves, label, **kwargs):
    """Plots the mean of per-seed `curves` over `steps`, with a ±1 sd band when > 1 seed."""
    values = np.asarray(curves, dtype=float)
    mean = np.nanmean(values, axis=0)
    (line,) = ax.plot(steps, mean, label=label, **kwargs)
    if len(values) > 1:
        sd = np.nanstd(values, axis=0, ddof=1)
        ax.fill_between(steps, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
    return line


def means(record):
    """metric name -> mean over seeds (NaN when no seed gave a finite value)."""
    return {
        name: math.nan if entry["mean"] is None else entry["mean"]
        for name, entry in record["metrics"].items()
    }


def seed_curves(record):
    """The `curves` of every seed, in seed order."""
    return [record["seeds"][key]["curves"] for key in sorted(record["seeds"], key=int)]


def accuracy_bars(ax, record, names, positions=None, colours=None):
    """Bars of the mean final accuracy `accuracy_NAME` of each arm, ±1 sd over seeds."""
    metrics = record["metrics"]
    positions = np.arange(len(names)) if positions is None else np.asarray(positions)
    means_ = [means(record)[f"accuracy_{name}"] for name in names]
    sds = [metrics[f"accuracy_{name}"]["sd"] or 0.0 for name in names]
    colours = colours or [f"C{i}" for i in range(len(names))]
    ax.bar(positions, means_, yerr=sds, capsize=3, color=colours)
    ax.set_xticks(positions, [name.replace("_", "\n") for name in names], fontsize=8)
    low = np.nanmin(means_) - 2 * max(sds) - 0.05
    ax.set_ylim(max(0.0, low) if np.isfinite(low) else 0.0, 1.0)
