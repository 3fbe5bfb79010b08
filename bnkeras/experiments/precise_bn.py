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

NAME = "precise-bn"
CLAIM = (
    "Wu & Johnson 2021 (Rethinking 'Batch' in BatchNorm, section 3): the EMA of batch "
    "statistics is a poor estimate of the population statistics when the weights change fast "
    "(high learning rate, early training); precise BN (true averages over ~100 batches with "
    "frozen weights) gives higher, more stable validation accuracy."
)
FIGURES = ("precise_bn.png",)
COMPARISONS = (
    ("final test accuracy, precise - EMA", "accuracy_precise_final", "accuracy_ema_final", +1),
    ("epoch-1 test accuracy, precise - EMA", "accuracy_precise_epoch1", "accuracy_ema_epoch1", +1),
    ("mean accuracy over epochs, precise - EMA", "accuracy_precise_mean", "accuracy_ema_mean", +1),
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
    "epochs": 2,
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
    }
    return {"metrics": metrics, "curves": curve}


def result_text(record):
    m = report.means(record)
    return (
        f"epoch 1: EMA {m['accuracy_ema_epoch1']:.3f} vs precise {m['accuracy_precise_epoch1']:.3f}; "
        f"end: EMA {m['accuracy_ema_final']:.3f} vs precise {m['accuracy_precise_final']:.3f}; "
        f"mean over epochs: EMA {m['accuracy_ema_mean']:.3f} vs precise {m['accuracy_precise_mean']:.3f}."
    )


def plot(record, workdir):
    curves = report.seed_curves(record)
    fig, (ax,) = report.figure(1)
    epochs = np.arange(1, len(curves[0]["test_accuracy"]) + 1)
    report.mean_band(ax, epochs, [c["test_accuracy"] for c in curves], "EMA statistics")
    report.mean_band(ax, epochs, [c["precise_accuracy"] for c in curves], "precise BN")
    ax.set(xlabel="epoch", ylabel="test accuracy", title="EMA vs precise BN statistics")
    ax.legend()
    return [report.save_figure(fig, workdir, FIGURES[0])]
