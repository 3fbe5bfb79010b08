"""`fig1`: Ioffe & Szegedy (2015), Figure 1, on MNIST-1D.

An MLP of three sigmoid layers of 100 units, weights from N(0, 0.1^2), trained
with SGD with and without BN after each hidden linear layer. Records test
accuracy over training and the 15th / 50th / 85th percentiles (over the test
set) of the input of one sigmoid of the last hidden layer.
"""

import math

import keras
import numpy as np

from bnkeras.experiments import data, models, report, training

NAME = "fig1"
CLAIM = (
    "Ioffe & Szegedy 2015, Fig. 1 (MNIST, 3x100 sigmoid MLP): with BN the network trains "
    "faster and reaches higher test accuracy, and the distribution of a sigmoid's input stays "
    "stable, while without BN its mean and variance drift over training."
)
FIGURES = ("fig1.png",)
ARMS = ("bn", "none")
COMPARISONS = (
    ("final test accuracy, BN - no BN", "accuracy_bn", "accuracy_none", +1),
    (
        "drift of the median sigmoid input (in 15-85 widths), BN - no BN",
        "drift_bn",
        "drift_none",
        -1,
    ),
)


DEFAULT = {
    "steps": 20000,
    "eval_every": 500,
    "batch_size": 60,
    "lr": 0.1,
    "width": 100,
    "depth": 3,
    "init_std": 0.1,
    "unit": 0,
}
QUICK = {"steps": 200, "eval_every": 50}


def setup_text(s):
    return (
        f"MNIST-1D (mnist1d.make_dataset defaults, 4000 train / 1000 test), MLP "
        f"{s['depth']}x{s['width']} sigmoid, N(0, {s['init_std']}^2) init, plain SGD lr {s['lr']}, "
        f"batch {s['batch_size']}, {s['steps']} steps, with vs without BN after each hidden linear "
        f"layer; percentiles of sigmoid input {s['unit']} of the last hidden layer over the test set."
    )


def median_drift(p15, p50, p85):
    """Range of the median over training, in units of the mean 15-85 percentile width."""
    width = float(np.mean(np.asarray(p85) - np.asarray(p15)))
    return float((np.max(p50) - np.min(p50)) / width) if width > 0 else float("inf")


def _run_arm(seed, s, norm, mnist):
    keras.utils.set_random_seed(seed)
    model, probe = models.mlp(
        mnist.x_train.shape[1:], mnist.num_classes, norm, s["width"], s["depth"], s["init_std"]
    )

    def percentiles(step):
        _, sigmoid_input = probe(mnist.x_test, training=False)
        values = np.asarray(sigmoid_input)[:, s["unit"]]
        quantiles = np.percentile(values, [15, 50, 85]).tolist()
        return dict(zip(("p15", "p50", "p85"), quantiles, strict=True))

    return training.train_with_settings(
        model,
        mnist,
        s,
        seed,
        f"fig1 seed {seed} {norm}",
        eval_every=s["eval_every"],
        on_eval=percentiles,
    )


def steps_to_reach(curve, target):
    """First evaluated step with test accuracy >= target (None if never)."""
    for step, accuracy in zip(curve["steps"], curve["test_accuracy"], strict=True):
        if accuracy >= target:
            return step
    return None


def run_seed(seed, s):
    mnist = data.mnist1d()
    curves = {norm: _run_arm(seed, s, norm, mnist) for norm in ARMS}
    metrics = {}
    for norm, curve in curves.items():
        metrics[f"accuracy_{norm}"] = curve["test_accuracy"][-1]
        metrics[f"drift_{norm}"] = median_drift(curve["p15"], curve["p50"], curve["p85"])
    reached = steps_to_reach(curves["bn"], metrics["accuracy_none"])
    metrics["bn_speedup_to_baseline_final"] = (
        None if reached is None else curves["none"]["steps"][-1] / reached
    )
    return {"metrics": metrics, "curves": curves}


def result_text(record):
    m = report.means(record)
    speedup = m["bn_speedup_to_baseline_final"]
    return (
        f"final test accuracy BN {m['accuracy_bn']:.3f} vs no BN {m['accuracy_none']:.3f}; "
        f"BN reaches the no-BN final accuracy "
        + ("never" if math.isnan(speedup) else f"{speedup:.1f}x sooner")
        + f"; median sigmoid input drifts {m['drift_bn']:.2f} (BN) vs {m['drift_none']:.2f} "
        "(no BN) of its 15-85 width."
    )


def plot(record, workdir):
    seeds = report.seed_curves(record)
    fig, axes = report.figure(3, width=4.2)
    for norm, label in (("none", "without BN"), ("bn", "with BN")):
        steps = seeds[0][norm]["steps"]
        curves = [c[norm]["test_accuracy"] for c in seeds if len(c[norm]["steps"]) == len(steps)]
        report.mean_band(axes[0], steps, curves, label)
    axes[0].set(xlabel="training step", ylabel="test accuracy", title="(a) test accuracy")
    axes[0].legend()
    for ax, norm, title in ((axes[1], "none", "(b) without BN"), (axes[2], "bn", "(c) with BN")):
        curve = seeds[0][norm]
        ax.fill_between(curve["steps"], curve["p15"], curve["p85"], alpha=0.3, label="15-85th")
        ax.plot(curve["steps"], curve["p50"], label="median")
        ax.set(xlabel="training step", ylabel="sigmoid input (seed 0)", title=title)
        ax.legend()
    return [report.save_figure(fig, workdir, FIGURES[0])]
