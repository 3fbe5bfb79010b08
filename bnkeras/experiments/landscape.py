"""`landscape`: Santurkar et al. (2018): BN smooths the loss landscape; "noisy BN".

The VGG-like CNN with and without BN trains on bnkeras_shapes with plain SGD.
Every K steps, on that step's batch, the loss and gradient are measured at
w - eta * g for 8 step sizes eta (`probes.landscape`): loss variation,
gradient predictiveness and effective beta-smoothness. A third network, "noisy
BN", adds a random per-channel scale and shift after each BN, resampled at every
step (the paper's injected covariate shift); its accuracy is compared (its
landscape is not measured: the noise changes at every call).
"""

import keras
import numpy as np
import tensorflow as tf

from bnkeras.experiments import data, models, probes, report, training

NAME = "landscape"
CLAIM = (
    "Santurkar et al. 2018 (How Does Batch Normalization Help Optimization?): with BN the "
    "loss changes less along the gradient (lower loss variation), the gradient is more "
    "predictive and the effective beta-smoothness is lower; BN with injected noisy "
    "(covariate-shifted) activations still trains about as well as BN."
)
FIGURES = ("landscape.png",)
MEASURES = ("loss_variation", "gradient_predictiveness", "beta_smoothness")
ARMS = ("bn", "none", "noisy-bn")
COMPARISONS = (
    ("loss variation, BN - no BN", "loss_variation_bn", "loss_variation_none", -1),
    (
        "gradient predictiveness (change), BN - no BN",
        "gradient_predictiveness_bn",
        "gradient_predictiveness_none",
        -1,
    ),
    ("effective beta-smoothness, BN - no BN", "beta_smoothness_bn", "beta_smoothness_none", -1),
    ("final test accuracy, noisy BN - no BN", "accuracy_noisy-bn", "accuracy_none", +1),
    ("final test accuracy, noisy BN - BN", "accuracy_noisy-bn", "accuracy_bn", +1),
)


DEFAULT = {
    "train": None,
    "test": None,
    "steps": 500,
    "measure_every": 50,
    "batch_size": 64,
    "lr": 0.05,
    "step_multipliers": [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0],
    "noise": 0.5,
    "widths": [16, 32, 64],
}
QUICK = {
    "train": 256,
    "test": 128,
    "steps": 10,
    "measure_every": 5,
    "batch_size": 32,
    "step_multipliers": [0.5, 2.0, 4.0],
    "widths": [8],
}


def setup_text(s):
    etas = ", ".join(f"{m:g}" for m in s["step_multipliers"])
    return (
        data.describe_shapes_vgg(s) + f" with BN, without BN, and noisy BN (per-channel scale "
        f"exp({s['noise']} z1), shift {s['noise']} z2 after each BN, resampled each step); plain "
        f"SGD lr {s['lr']}, batch {s['batch_size']}, {s['steps']} steps; every "
        f"{s['measure_every']} steps, loss and gradient at w - eta g for eta = lr x ({etas})."
    )


def _measurer(model, s, curve):
    def loss_and_gradients_on(x, y):
        return training.loss_and_gradients(model, x, y)

    compiled = tf.function(loss_and_gradients_on)
    step_sizes = [s["lr"] * m for m in s["step_multipliers"]]

    def on_step(step, x, y):
        if step != 1 and step % s["measure_every"]:
            return
        # Training-mode calls update BN's moving statistics: put them back after.
        with probes.restored(model.non_trainable_variables):
            measures = probes.landscape(
                model.trainable_variables, lambda: compiled(x, y), step_sizes
            )
        curve.setdefault("measured_steps", []).append(step)
        for name, value in measures.items():
            curve.setdefault(name, []).append(value)

    return on_step


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"])
    metrics, curves = {}, {}
    for arm in ARMS:
        keras.utils.set_random_seed(seed)
        options = {"noise": s["noise"], "seed": seed} if arm == "noisy-bn" else None
        model = models.vgg(
            shapes.x_train.shape[1:], shapes.num_classes, arm, options, widths=s["widths"]
        )
        measured = {}
        on_step = None if arm == "noisy-bn" else _measurer(model, s, measured)
        curve = training.train_with_settings(
            model, shapes, s, seed, f"landscape seed {seed} {arm}", on_step=on_step
        )
        curve.update(measured)
        curves[arm] = curve
        metrics[f"accuracy_{arm}"] = curve["test_accuracy"][-1]
        for name in MEASURES if arm != "noisy-bn" else ():
            metrics[f"{name}_{arm}"] = float(np.mean(measured[name]))
    return {"metrics": metrics, "curves": curves}


def result_text(record):
    m = report.means(record)
    return (
        f"BN vs no BN (means over training): loss variation {m['loss_variation_bn']:.3g} vs "
        f"{m['loss_variation_none']:.3g}, gradient change {m['gradient_predictiveness_bn']:.3g} "
        f"vs {m['gradient_predictiveness_none']:.3g}, beta-smoothness "
        f"{m['beta_smoothness_bn']:.3g} vs {m['beta_smoothness_none']:.3g}; final test accuracy "
        f"BN {m['accuracy_bn']:.3f}, noisy BN {m['accuracy_noisy-bn']:.3f}, no BN "
        f"{m['accuracy_none']:.3f}."
    )


def plot(record, workdir):
    seeds = report.seed_curves(record)
    fig, axes = report.figure(4, width=3.6)
    for arm, label in (("bn", "with BN"), ("none", "without BN")):
        steps = seeds[0][arm]["measured_steps"]
        for ax, name in zip(axes, MEASURES, strict=False):
            curves = [c[arm][name] for c in seeds if len(c[arm].get(name, ())) == len(steps)]
            report.mean_band(ax, steps, curves, label)
            ax.set(xlabel="training step", title=name.replace("_", " "))
            ax.set_yscale("log")
    for arm, label in (("bn", "BN"), ("none", "no BN"), ("noisy-bn", "noisy BN")):
        steps = seeds[0][arm]["steps"]
        curves = [c[arm]["test_accuracy"] for c in seeds if len(c[arm]["steps"]) == len(steps)]
        report.mean_band(axes[3], steps, curves, label)
    axes[3].set(xlabel="training step", title="test accuracy")
    for ax in axes:
        ax.legend(fontsize=8)
    return [report.save_figure(fig, workdir, FIGURES[0])]
