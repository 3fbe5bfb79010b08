"""`precise-bn`: Wu & Johnson (2021), EMA statistics vs precise BN, per epoch.

The VGG-like CNN with BN trains on bnkeras_shapes at a high constant learning
rate. After each epoch the test accuracy is measured twice: with the moving
averages (EMA) of training, and with precise statistics from
`bnkeras.recalibrate_batchnorm` over a number of training batches with the
weights frozen (the EMA statistics are put back before training goes on).
"""

import keras
import numpy as np
import tensorflow as tf

from bnkeras.experiments import data, models, probes, report, training
from bnkeras.experiments.protocol import Claim, Comparison, Precondition, Protocol

NAME = "precise-bn"
CLAIM = (
    "Wu & Johnson 2021 (Rethinking 'Batch' in BatchNorm, section 3): the EMA of batch "
    "statistics is a poor estimate of the population statistics when the weights change fast "
    "(high learning rate, early training); precise BN (true averages over ~100 batches with "
    "frozen weights) gives higher, more stable validation accuracy."
)
FIGURES = ("precise_bn.png",)
_PROGRESS = Precondition(
    "the network trains: after epoch 1, precise-BN test accuracy is above 0.2 (chance 0.1)",
    Comparison("accuracy_precise_epoch1", value=0.2),
)
PROTOCOL = Protocol(
    claims=(
        Claim(
            "early",
            "Early in training, when the weights change fast, precise BN statistics give a "
            "higher validation accuracy than the EMA.",
            "test accuracy (fraction of 1000 test images) after epoch 1, precise BN minus EMA "
            "statistics of the same network",
            Comparison("accuracy_precise_epoch1", "accuracy_ema_epoch1", test="paired"),
            (_PROGRESS,),
        ),
        Claim(
            "final",
            "At a high constant learning rate, precise BN statistics give a higher validation "
            "accuracy than the EMA at the end of training too.",
            "test accuracy after the last epoch, precise BN minus EMA statistics of the same "
            "network",
            Comparison("accuracy_precise_final", "accuracy_ema_final", test="paired"),
            (_PROGRESS,),
        ),
        Claim(
            "stable",
            "Precise BN's validation accuracy is more stable from epoch to epoch than the EMA's.",
            "mean absolute change of test accuracy between consecutive epochs after epoch 1, "
            "precise BN minus EMA statistics of the same network",
            Comparison("accuracy_precise_jitter", "accuracy_ema_jitter", "less", "paired"),
            (_PROGRESS,),
        ),
    ),
    limitations=(
        "A 6-epoch run of a small CNN on the embedded 32x32 shapes, not ImageNet; BN momentum "
        "0.99 (Keras's default; an EMA time constant of ~100 steps, about one epoch here), so "
        "epoch 1's EMA still carries the first steps' statistics by construction. Precise "
        "statistics use 100 training batches of 64 with frozen weights. Test accuracy is "
        "measured on the 1000 test images, which also serve as the validation set."
    ),
)
DEFAULT = {
    "train": None,
    "test": None,
    "epochs": 6,
    "batch_size": 64,
    "lr": 0.1,
    "momentum": 0.9,
    "precise_batches": 100,
    "widths": [16, 32, 64],
}
QUICK = {
    "train": 512,
    "test": 256,
    "epochs": 3,  # the epoch-to-epoch change needs 3
    "batch_size": 32,
    "precise_batches": 8,
    "widths": [8],
}


def setup_text(s):
    return (
        data.describe_shapes_vgg(s) + f" with BN (momentum 0.99), SGD lr {s['lr']} "
        f"momentum {s['momentum']} (constant), batch {s['batch_size']}, {s['epochs']} epochs; "
        f"after each epoch test accuracy with EMA statistics vs recalibrate_batchnorm over "
        f"{s['precise_batches']} training batches."
    )


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"])
    keras.utils.set_random_seed(seed)
    model = models.vgg(shapes.x_train.shape[1:], shapes.num_classes, "bn", widths=s["widths"])
    rng = np.random.default_rng(seed + 10_000)
    batches = (
        tf.constant(shapes.x_train[index])
        for index in training.shuffled_batches(len(shapes.x_train), s["batch_size"], rng)
    )

    def precise_accuracy(step):
        with probes.precise_bn(model, batches, s["precise_batches"]):
            return {"precise_accuracy": training.evaluate(model, shapes.x_test, shapes.y_test)[0]}

    steps_per_epoch = len(shapes.x_train) // s["batch_size"]
    curve = training.train(
        model,
        shapes,
        steps=s["epochs"] * steps_per_epoch,
        batch_size=s["batch_size"],
        lr=s["lr"],
        momentum=s["momentum"],
        seed=seed,
        eval_every=steps_per_epoch,
        on_eval=precise_accuracy,
        name=f"precise-bn seed {seed}",
    )
    ema, precise = curve["test_accuracy"], curve["precise_accuracy"]
    metrics = {
        "accuracy_ema_epoch1": ema[0],
        "accuracy_precise_epoch1": precise[0],
        "accuracy_ema_final": ema[-1],
        "accuracy_precise_final": precise[-1],
        "accuracy_ema_mean": float(np.mean(ema)),
        "accuracy_precise_mean": float(np.mean(precise)),
        "accuracy_ema_jitter": _jitter(ema),
        "accuracy_precise_jitter": _jitter(precise),
    }
    return {"metrics": metrics, "curves": curve}


def _jitter(accuracies):
    """Mean absolute change between consecutive epochs, epoch 1 left out (NaN for < 3 epochs)."""
    later = np.asarray(accuracies[1:], dtype=float)
    return float(np.mean(np.abs(np.diff(later)))) if len(later) > 1 else float("nan")


def result_text(record):
    m = report.means(record)
    return (
        f"epoch 1: EMA {m['accuracy_ema_epoch1']:.3f} vs precise {m['accuracy_precise_epoch1']:.3f}; "
        f"end: EMA {m['accuracy_ema_final']:.3f} vs precise {m['accuracy_precise_final']:.3f}; "
        f"mean over epochs: EMA {m['accuracy_ema_mean']:.3f} vs precise "
        f"{m['accuracy_precise_mean']:.3f}; epoch-to-epoch change after epoch 1: EMA "
        f"{m['accuracy_ema_jitter']:.3f} vs precise {m['accuracy_precise_jitter']:.3f} "
        f"(means over {len(record['seeds'])} seeds)."
    )


def plot(record, workdir):
    curves = report.seed_curves(record)
    fig, axes = report.figure(2)
    epochs = np.arange(1, len(curves[0]["test_accuracy"]) + 1)
    for key, label in (("test_accuracy", "EMA statistics"), ("precise_accuracy", "precise BN")):
        report.seed_lines(axes[0], epochs, [c[key] for c in curves], f"{label} (mean)")
    axes[0].set(xlabel="epoch", title="per seed (thin) and mean (thick)")
    report.accuracy_axis(axes[0])
    axes[0].legend()
    m = record["metrics"]
    arms = [
        m["accuracy_ema_epoch1"]["per_seed"],
        m["accuracy_precise_epoch1"]["per_seed"],
        m["accuracy_ema_final"]["per_seed"],
        m["accuracy_precise_final"]["per_seed"],
    ]
    report.seed_points(
        axes[1],
        [0, 1, 2.5, 3.5],
        arms,
        ["EMA\nepoch 1", "precise\nepoch 1", "EMA\nlast", "precise\nlast"],
        colors=["C0", "C1", "C0", "C1"],
    )
    axes[1].set(title="each seed (dot) and the mean (bar)")
    report.accuracy_axis(axes[1])
    return [report.save_figure(fig, workdir, FIGURES[0])]
