"""results.json, summary.md and figures of an experiment's work directory."""

import json
import math
import warnings

import numpy as np
from matplotlib.figure import Figure

from bnkeras.experiments import stats
from bnkeras.training.files import atomic_write_text

__all__ = [
    "accuracy_axis",
    "all_summary_markdown",
    "atomic_write_text",
    "figure",
    "readme_table",
    "means",
    "save_figure",
    "seed_curves",
    "seed_lines",
    "seed_points",
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
    if value is None or (isinstance(value, float) and math.isnan(value)):  # NaN: null in JSON
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


def _claims_table(claims):
    lines = [
        "| claim | metric | comparison | effect (95% CI) | p (Holm) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        p_holm = c.get("p_holm")
        lines.append(
            f"| **{c['name']}**: {_cell(c['statement'])} | {_cell(c['metric'])} | "
            f"{_cell(c['comparison'])} ({c['test']}) | {_cell(stats.effect_text(c))} | "
            f"{'n/a' if p_holm is None else f'{p_holm:.2g}'} | **{c['verdict']}** |"
        )
    conditions = [(c["name"], p) for c in claims for p in c["preconditions"]]
    if conditions:
        lines += [
            "",
            "| claim | precondition | comparison | measured (95% CI) | met |",
            "|---|---|---|---|---|",
        ]
        for name, p in conditions:
            lines.append(
                f"| {name} | {_cell(p['statement'])} | {_cell(p['comparison'])} ({p['test']}) "
                f"| {_cell(stats.effect_text(p))} | {'yes' if p['met'] else '**no**'} |"
            )
    return lines


def _machine_text(record):
    seeds = [record["seeds"][s] for s in sorted(record["seeds"], key=int)]
    wall = [s["wall_seconds"] for s in seeds]
    loads = [s["load"] for s in seeds if s.get("load") is not None]
    machine = record.get("machine") or {}
    text = (
        f"{len(seeds)} seed(s), {sum(wall):.0f} s of training in total "
        f"({min(wall, default=0):.0f}-{max(wall, default=0):.0f} s per seed)"
    )
    if machine:
        text += f" on {machine['cpu']} ({machine['logical_cores']} logical cores)"
    if loads:
        text += f", 1-minute load {min(loads):.1f}-{max(loads):.1f} when the seeds ended"
    return text


def summary_markdown(record):
    """An experiment's page: claim, setup, result, each claim's verdict, protocol, details."""
    mode = "quick (tiny sizes: not a measurement)" if record["quick"] else "default"
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    protocol = record["protocol"]
    lines = [
        f"# `bnkeras reproduce {record['experiment']}`",
        "",
        "| | |",
        "|---|---|",
        f"| Paper's claim | {_cell(record['claim'])} |",
        f"| Our setup | {_cell(record['setup'])} |",
        f"| Our result | {_cell(record['result'])} |",
        "",
        "## Claims and verdicts",
        "",
        "Each claim's comparison, direction and preconditions were fixed in the experiment's "
        "protocol before the runs. Verdicts: supported or contradicted when the Holm-adjusted "
        f"p-value over the experiment's claims is below {stats.ALPHA}; otherwise inconclusive, "
        "with the 95% interval; no verdict when a precondition's 95% interval does not show it.",
        "",
        *_claims_table(record["claims"]),
        "",
        "## Limitations",
        "",
        protocol["limitations"],
        "",
    ]
    if protocol["post_hoc"]:
        lines += ["Choices made after seeing data:", ""]
        lines += [f"- {choice}" for choice in protocol["post_hoc"]] + [""]
    lines += [
        "## Runs",
        "",
        f"Mode {mode}; {_machine_text(record)}; {versions}.",
        "",
        "| metric | mean ± sd over seeds | per seed |",
        "|---|---|---|",
    ]
    for name, entry in record["metrics"].items():
        per_seed = ", ".join(_number(v) for v in entry["per_seed"])
        lines.append(f"| {name} | {_mean_sd(entry)} | {per_seed} |")
    lines.append("")
    lines += [f"![{name}]({name})" for name in record["files"] if name.endswith(".png")]
    return "\n".join(lines) + "\n"


ALL_MARKER = "<!-- written by `bnkeras reproduce all` -->"


def all_summary_markdown(records):
    """One table row per claim of every experiment, linking to the experiment's page."""
    lines = [
        ALL_MARKER,
        "# `bnkeras reproduce all`",
        "",
        "| experiment | claim | effect (95% CI) | verdict | seeds |",
        "|---|---|---|---|---|",
    ]
    for name, record in records.items():
        for claim in record["claims"]:
            lines.append(
                f"| [{name}]({name}/summary.md) | **{claim['name']}**: "
                f"{_cell(claim['statement'])} | {_cell(stats.effect_text(claim))} | "
                f"{claim['verdict']} | {len(record['seeds'])} |"
            )
    return "\n".join(lines) + "\n"


def readme_table(records, results_dir="docs/results"):
    """The README's table: every claim's verdict, one row per experiment, linking its page."""
    lines = ["| experiment | seeds | claims and verdicts |", "|---|---|---|"]
    for name, record in records.items():
        verdicts = "; ".join(f"{c['name']}: **{c['verdict']}**" for c in record["claims"])
        lines.append(
            f"| [{name}]({results_dir}/{name}/summary.md) | {len(record['seeds'])} | {verdicts} |"
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


def seed_lines(ax, steps, curves, label, color=None, mean=True):
    """Every seed's curve as a thin line and, with `mean`, their mean as a thick one.

    Non-finite points (diverged runs) are gaps. On a log axis only positive values
    are drawn: no band can reach below zero.

    Returns:
        The colour used.
    """
    values = np.asarray(curves, dtype=float)
    steps = np.asarray(steps)
    if mean:
        with warnings.catch_warnings():  # a step where every seed diverged: a gap
            warnings.simplefilter("ignore", RuntimeWarning)
            average = np.nanmean(values, axis=0)
        (line,) = ax.plot(steps, average, color=color, linewidth=2.0, label=label, zorder=3)
    else:
        (line,) = ax.plot(steps, values[0], color=color, alpha=0.4, linewidth=0.7, label=label)
        values = values[1:]
    color = line.get_color()
    for curve in values:
        ax.plot(steps, curve, color=color, alpha=0.3, linewidth=0.7)
    return color


def seed_points(ax, positions, per_arm, labels, colors=None):
    """Each seed's value as a dot per arm (jittered), with the arm's mean as a bar."""
    rng = np.random.default_rng(0)  # the jitter only
    colors = colors or [f"C{i}" for i in range(len(per_arm))]
    for x, values, color in zip(positions, per_arm, colors, strict=True):
        values = np.asarray([np.nan if v is None else v for v in values], dtype=float)
        jitter = rng.uniform(-0.12, 0.12, len(values))
        ax.scatter(x + jitter, values, s=12, color=color, alpha=0.7, linewidths=0)
        if np.isfinite(values).any():
            ax.hlines(np.nanmean(values), x - 0.3, x + 0.3, color=color, linewidth=2.0)
    ax.set_xticks(positions, labels, fontsize=8)


def accuracy_axis(ax, label="test accuracy (fraction correct)"):
    """A y axis for accuracies: the label and limits inside [0, 1]."""
    low, high = ax.get_ylim()
    ax.set_ylim(max(0.0, low), min(1.0, high) if high > 0 else 1.0)
    ax.set_ylabel(label)


def means(record):
    """metric name -> mean over seeds (NaN when no seed gave a finite value)."""
    return {
        name: math.nan if entry["mean"] is None else entry["mean"]
        for name, entry in record["metrics"].items()
    }


def seed_curves(record):
    """The `curves` of every seed, in seed order."""
    return [record["seeds"][key]["curves"] for key in sorted(record["seeds"], key=int)]
