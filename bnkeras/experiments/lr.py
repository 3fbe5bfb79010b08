"""`lr`: Ioffe & Szegedy (2015, section 4.2.2, BN-x5 / BN-x30): BN allows higher learning rates.

The VGG-like CNN trains on the hard configuration of bnkeras_shapes (20 classes;
the default set is at ceiling) with SGD and momentum. The network without BN
trains at each rate of a small sweep; its best rate (the "base rate", as the
paper's base rate is the one tuned for Inception) is chosen per seed by the
accuracy on a validation split held out of the TRAINING data, never the test
set. The network with BN then trains at 5x and 30x that base rate, and the
network without BN at 30x it too. Every arm trains on the same training
examples for the same number of steps. A run diverges (`diverged`) when its
training loss becomes non-finite (training stops; the NaN network scores
chance) or when its mean training loss over the last fifth of the steps is not
below ln(20), the loss of a uniform guess: the run blew up and did not recover.
"""

import math

import keras
import numpy as np

from bnkeras.experiments import data, models, report, training
from bnkeras.experiments.protocol import Claim, Comparison, Precondition, Protocol

NAME = "lr"
CLAIM = (
    "Ioffe & Szegedy 2015, section 4.2 (Inception, BN-x5 / BN-x30): with BN the learning rate "
    "can be raised 5x and 30x and training still converges, to a better accuracy than the "
    "network without BN at its own rate; without BN high rates diverge."
)
FIGURES = ("lr.png",)
MULTIPLIERS = (5, 30)  # of the no-BN network's best rate
CHANCE = 1 / 20  # 20 balanced classes
_BASELINE_TRAINS = Precondition(
    "the network without BN trains at its best rate: its test accuracy is above chance "
    f"({CHANCE:g}) by more than 0.10",
    Comparison("accuracy_none_best", value=CHANCE + 0.10),
)
PROTOCOL = Protocol(
    claims=(
        Claim(
            "bn_x5",
            "With BN, 5x the learning rate of the network without BN trains to a better "
            "accuracy than the network without BN at its rate (BN-x5 vs Inception).",
            "test accuracy (fraction of 2000 test images) after the last step, BN at 5x the "
            "base rate minus no BN at the base rate (its best rate by validation accuracy)",
            Comparison("accuracy_bn_x5", "accuracy_none_best"),
            (_BASELINE_TRAINS,),
        ),
        Claim(
            "bn_x30",
            "With BN, 30x the learning rate still converges, to a better accuracy than the "
            "network without BN at its rate (BN-x30 vs Inception).",
            "test accuracy after the last step, BN at 30x the base rate minus no BN at the base "
            "rate",
            Comparison("accuracy_bn_x30", "accuracy_none_best"),
            (_BASELINE_TRAINS,),
        ),
        Claim(
            "none_diverges",
            "Without BN, high learning rates diverge: at 30x the base rate the network without "
            "BN diverges more often than the network with BN.",
            "per seed 0/1: diverged at 30x the base rate (a non-finite training loss, or a "
            "final training loss not below ln 20, a uniform guess's); counts over seeds, no BN "
            "vs BN (Fisher's exact test)",
            Comparison("diverged_none_x30", "diverged_bn_x30", test="fisher"),
            (_BASELINE_TRAINS,),
        ),
    ),
    limitations=(
        "A 6-layer CNN on 32x32 synthetic shapes (20 classes) for a few hundred steps, not "
        "Inception on ImageNet for millions: 'converges' here means trains to a final "
        "accuracy, with no learning-rate decay and none of the paper's other changes for "
        "BN-x5/x30 (no dropout, less L2, faster decay, shuffling). The base rate is the best "
        "of four rates (a factor 3 apart) for the network without BN, chosen on a held-out "
        "tenth-of-the-data validation split per seed; a finer sweep or a schedule could raise "
        "that baseline, and SGD momentum 0.9 (as Inception's) makes every rate's step ~10x "
        "larger than plain SGD's. Divergence is a non-finite loss or a final training loss no "
        "better than a uniform guess; a run that oscillates below that counts as trained."
    ),
    post_hoc=(
        "600 steps (not 400) and the divergence rule's second half (final training loss not "
        "below ln 20) were chosen after a 1-seed trial run: after 400 steps the network "
        "without BN at its best rate scored 0.127 (chance 0.05), and at 30x the rate networks "
        "with and without BN sat at chance with finite losses instead of NaN.",
    ),
)


DEFAULT = {
    "data": "hard",
    "train": None,
    "test": None,
    "validation": 1000,
    "steps": 600,
    "batch_size": 32,
    "momentum": 0.9,
    "rates": [0.003, 0.01, 0.03, 0.1],
    "widths": [8, 16, 32],
}
QUICK = {"train": 400, "test": 100, "validation": 100, "steps": 12, "widths": [8]}


def setup_text(s):
    return (
        data.describe_shapes_vgg(s) + f" with vs without BN, SGD momentum {s['momentum']}, "
        f"batch {s['batch_size']}, {s['steps']} steps; without BN at lr "
        f"{' / '.join(map(str, s['rates']))}, the base rate chosen per seed by accuracy on "
        f"{s['validation']} held-out training images; BN at "
        f"{' / '.join(f'{k}x' for k in MULTIPLIERS)} and no BN at 30x the base rate; a "
        "non-finite loss or a final training loss >= ln 20 counts as a divergence."
    )


def best_rate(rates, validation_accuracies):
    """The rate with the highest validation accuracy (the lowest such rate on ties).

    A diverged run (NaN or None accuracy) never wins.
    """
    scores = [
        -np.inf if a is None or not np.isfinite(a) else float(a) for a in validation_accuracies
    ]
    if len(scores) != len(rates) or not scores:
        raise ValueError(f"one accuracy per rate needed; got {len(scores)} for {len(rates)}")
    return rates[int(np.argmax(scores))]


def diverged(curve, num_classes=20):
    """A non-finite training loss, or a final training loss not below ln(num_classes)."""
    final = curve["train_loss"][-1] if curve["train_loss"] else math.nan
    return bool(curve["diverged"] or not math.isfinite(final) or final >= math.log(num_classes))


def _arm(seed, s, train_data, norm, lr, name):
    keras.utils.set_random_seed(seed)
    model = models.vgg(train_data.x_train.shape[1:], 20, norm, widths=s["widths"])  # 20 classes
    curve = training.train_with_settings(
        model, train_data, s, seed, f"lr seed {seed} {name}", lr=lr
    )
    return model, curve


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"], config=s["data"])
    kept, validation = training.holdout(shapes, s["validation"])
    metrics, curves, validation_accuracies = {}, {}, []
    for lr in s["rates"]:
        model, curve = _arm(seed, s, validation, "none", lr, f"none lr {lr}")
        validation_accuracies.append(curve["test_accuracy"][-1])
        curve["final_test_accuracy"] = training.evaluate(model, shapes.x_test, shapes.y_test)[0]
        curves[f"none_lr{lr}"] = curve
    base = best_rate(s["rates"], validation_accuracies)
    metrics["base_rate"] = base
    metrics["accuracy_none_best"] = curves[f"none_lr{base}"]["final_test_accuracy"]
    metrics["validation_accuracy_none_best"] = max(
        (a for a in validation_accuracies if np.isfinite(a)), default=np.nan
    )
    for norm, multiplier in (("bn", 5), ("bn", 30), ("none", 30)):
        key = f"{norm}_x{multiplier}"
        _, curve = _arm(seed, s, kept, norm, base * multiplier, key)
        metrics[f"accuracy_{key}"] = curve["test_accuracy"][-1]
        metrics[f"diverged_{key}"] = float(diverged(curve))
        curves[key] = curve
    for lr in s["rates"]:
        curve = curves[f"none_lr{lr}"]
        metrics[f"validation_accuracy_none_lr{lr}"] = curve["test_accuracy"][-1]
        metrics[f"accuracy_none_lr{lr}"] = curve["final_test_accuracy"]
    return {"metrics": metrics, "curves": curves}


ARMS_PLOTTED = ("best", "bn_x5", "bn_x30", "none_x30")


def _final_losses(record, key):
    """Each seed's training loss over the last fifth of the steps of arm `key`."""
    losses = []
    for curves in report.seed_curves(record):
        if key == "best":
            rates = [rate for rate in record["settings"]["rates"] if f"none_lr{rate}" in curves]
            validation = [curves[f"none_lr{rate}"]["test_accuracy"][-1] for rate in rates]
            key_ = f"none_lr{best_rate(rates, validation)}"
        else:
            key_ = key
        loss = curves[key_]["train_loss"][-1]
        losses.append(loss if loss is not None and math.isfinite(loss) else math.nan)
    return losses


def _count(record, name):
    return int(sum(value or 0 for value in record["metrics"][name]["per_seed"]))


def result_text(record):
    m, n = report.means(record), len(record["seeds"])
    bases = record["metrics"]["base_rate"]["per_seed"]
    chosen = ", ".join(f"{rate:g} ({bases.count(rate)}x)" for rate in sorted(set(bases)))
    best, bn = _final_losses(record, "best"), _final_losses(record, "bn_x5")
    lower = sum(b < a for a, b in zip(best, bn, strict=True))
    return (
        f"Best rate without BN (by validation accuracy): {chosen} over {n} seeds. Test "
        f"accuracy, means over {n} seeds: no BN at its best rate {m['accuracy_none_best']:.3f}; "
        f"BN at 5x {m['accuracy_bn_x5']:.3f}, at 30x {m['accuracy_bn_x30']:.3f} (diverged "
        f"{_count(record, 'diverged_bn_x5')} / {_count(record, 'diverged_bn_x30')} of {n}); no BN "
        f"at 30x {m['accuracy_none_x30']:.3f} (diverged {_count(record, 'diverged_none_x30')} "
        f"of {n}). Training loss over the last fifth of the steps, means: no BN at its best "
        f"rate {np.nanmean(best):.2f}, BN at 5x {np.nanmean(bn):.2f} (lower in {lower} of {n} "
        "seeds)."
    )


def plot(record, workdir):
    m = record["metrics"]
    rates = record["settings"]["rates"]
    fig, axes = report.figure(3, width=4.6)
    ax = axes[0]
    validation = [m[f"validation_accuracy_none_lr{lr}"]["per_seed"] for lr in rates]
    report.seed_lines(ax, rates, np.array(validation, dtype=float).T, "no BN, validation (mean)")
    test = [m[f"accuracy_none_lr{lr}"]["per_seed"] for lr in rates]
    report.seed_lines(ax, rates, np.array(test, dtype=float).T, "no BN, test (mean)")
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    bases = m["base_rate"]["per_seed"]
    chosen = ", ".join(f"{rate:g} in {bases.count(rate)}" for rate in sorted(set(bases)))
    ax.set(
        xlabel="learning rate (SGD, momentum 0.9)",
        title=f"no BN (thin: seeds); best rate {chosen}/{len(bases)}",
    )
    report.accuracy_axis(ax, "accuracy after the last step (fraction correct)")
    ax.legend(fontsize=8)
    ax = axes[1]
    names = ["accuracy_none_best", "accuracy_bn_x5", "accuracy_bn_x30", "accuracy_none_x30"]
    labels = ["no BN\nbest rate", "BN\n5x", "BN\n30x", "no BN\n30x"]
    report.seed_points(
        ax, [0, 1, 2, 3], [m[name]["per_seed"] for name in names], labels, ["C1", "C0", "C0", "C1"]
    )
    n = len(record["seeds"])
    for x, name in ((1, "diverged_bn_x5"), (2, "diverged_bn_x30"), (3, "diverged_none_x30")):
        ax.annotate(f"diverged\n{_count(record, name)}/{n}", (x, 0.9), ha="center", fontsize=8)
    ax.axhline(CHANCE, color="grey", linestyle=":", linewidth=1)
    ax.set_ylim(0.0, 1.0)
    ax.axhline(CHANCE + 0.10, color="C1", linestyle="--", linewidth=1)
    ax.annotate("precondition: no BN best above", (1.6, CHANCE + 0.11), fontsize=7)
    ax.set(title="rates x the no-BN best rate (each seed a dot)")
    report.accuracy_axis(ax, "test accuracy after the last step (fraction correct)")
    ax = axes[2]
    losses = [_final_losses(record, key) for key in ARMS_PLOTTED]
    report.seed_points(ax, [0, 1, 2, 3], losses, labels, ["C1", "C0", "C0", "C1"])
    ax.axhline(math.log(20), color="grey", linestyle=":", linewidth=1)
    ax.annotate("ln 20 (uniform guess)", (-0.45, math.log(20) + 0.03), fontsize=7)
    ax.set(
        title="training loss, last fifth of the steps",
        ylabel="mean training loss (nats)",
    )
    return [report.save_figure(fig, workdir, FIGURES[0])]
