"""`lr`: Ioffe & Szegedy (2015, section 4.2.2, BN-x5 / BN-x30): BN allows higher learning rates.

The VGG-like CNN, with and without BN, trains on bnkeras_shapes with plain SGD
at the base learning rate times 1, 5 and 30, for the same number of steps. A
non-finite training loss counts as a divergence (training stops; the accuracy
is what the NaN network scores, i.e. chance).
"""

import keras
import numpy as np

from bnkeras.experiments import data, models, report, training

NAME = "lr"
CLAIM = (
    "Ioffe & Szegedy 2015, section 4.2 (Inception, BN-x5 / BN-x30): with BN the learning rate "
    "can be raised 5x and 30x and training still converges, to a better accuracy than the "
    "network without BN at its own rate; without BN high rates diverge."
)
FIGURES = ("lr.png",)
MULTIPLIERS = (1, 5, 30)
NORMS = ("bn", "none")
COMPARISONS = (
    ("final test accuracy, BN at x5 - no BN at x1", "accuracy_bn_x5", "accuracy_none_x1", +1),
    ("final test accuracy, BN at x30 - no BN at x1", "accuracy_bn_x30", "accuracy_none_x1", +1),
    ("final test accuracy, BN at x1 - no BN at x1", "accuracy_bn_x1", "accuracy_none_x1", +1),
    ("diverged runs at x30, BN - no BN", "diverged_bn_x30", "diverged_none_x30", -1),
)


DEFAULT = {
    "train": None,
    "test": None,
    "steps": 300,
    "batch_size": 64,
    "base_lr": 0.01,
    "widths": [16, 32, 64],
}
QUICK = {"train": 256, "test": 128, "steps": 12, "batch_size": 32, "widths": [8]}


def setup_text(s):
    return (
        data.describe_shapes_vgg(s) + " with vs without BN, plain SGD, "
        f"base lr {s['base_lr']} times {' / '.join(map(str, MULTIPLIERS))}, batch "
        f"{s['batch_size']}, {s['steps']} steps; a non-finite loss counts as a divergence."
    )


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"])
    metrics, curves = {}, {}
    for norm in NORMS:
        for multiplier in MULTIPLIERS:
            keras.utils.set_random_seed(seed)
            model = models.vgg(
                shapes.x_train.shape[1:], shapes.num_classes, norm, widths=s["widths"]
            )
            key = f"{norm}_x{multiplier}"
            curve = training.train_with_settings(
                model, shapes, s, seed, f"lr seed {seed} {key}", lr=s["base_lr"] * multiplier
            )
            metrics[f"accuracy_{key}"] = curve["test_accuracy"][-1]
            metrics[f"diverged_{key}"] = float(curve["diverged"])
            curves[key] = curve
    return {"metrics": metrics, "curves": curves}


def _divergences(record, key):
    return int(sum(value or 0 for value in record["metrics"][f"diverged_{key}"]["per_seed"]))


def result_text(record):
    m = report.means(record)
    parts = []
    for norm, label in (("bn", "with BN"), ("none", "without BN")):
        accuracies = " / ".join(f"{m[f'accuracy_{norm}_x{k}']:.3f}" for k in MULTIPLIERS)
        diverged = ", ".join(f"x{k}: {_divergences(record, f'{norm}_x{k}')}" for k in MULTIPLIERS)
        parts.append(f"{label} {accuracies} at x1 / x5 / x30 (diverged runs {diverged})")
    return f"test accuracy {'; '.join(parts)}; {len(record['seeds'])} seed(s)."


def plot(record, workdir):
    m, means = record["metrics"], report.means(record)
    fig, (ax,) = report.figure(1)
    for offset, (norm, label) in zip(
        (-0.03, 0.03), (("bn", "with BN"), ("none", "without BN")), strict=True
    ):
        x = np.array(MULTIPLIERS, float) * (1 + offset)
        accuracies = [means[f"accuracy_{norm}_x{k}"] for k in MULTIPLIERS]
        sds = [m[f"accuracy_{norm}_x{k}"]["sd"] or 0.0 for k in MULTIPLIERS]
        ax.errorbar(x, accuracies, yerr=sds, marker="o", capsize=3, label=label)
        for xi, k in zip(x, MULTIPLIERS, strict=True):
            count = _divergences(record, f"{norm}_x{k}")
            if count:
                ax.annotate(f"{count} NaN", (xi, 0.1), ha="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xticks(MULTIPLIERS, [f"x{k}" for k in MULTIPLIERS])
    ax.set(
        xlabel="learning rate (times the base rate)",
        ylabel="final test accuracy",
        title="accuracy vs learning rate",
    )
    ax.legend()
    return [report.save_figure(fig, workdir, FIGURES[0])]
