"""`ghost`: Hoffer et al. (2017): ghost BN and regime adaptation close the large-batch gap.

A 1-D CNN on MNIST-1D trains with a small batch and with a 16x larger batch
(learning rate scaled by sqrt(16), the paper's rule), for the same number of
epochs, with plain BN or with ghost BN (`bnkeras.GhostBatchNormalization`, the
statistics of small virtual batches), and for "regime adaptation" with the
large batch trained for more epochs. The final training loss on the whole
training set tells optimization apart from generalization.
"""

import math

import keras

from bnkeras.experiments import data, models, probes, report, training

NAME = "ghost"
CLAIM = (
    "Hoffer et al. 2017 (Train longer, generalize better): the generalization gap of large "
    "batches comes from too few updates; with sqrt learning-rate scaling, ghost batch "
    "normalization (statistics of small virtual batches) and regime adaptation (as many "
    "updates as the small batch) the large batch generalizes as well as the small one."
)
FIGURES = ("ghost.png",)
# name -> (batch kind, norm, epochs multiplier)
ARMS = {
    "small_bn": ("small", "bn", 1),
    "large_bn": ("large", "bn", 1),
    "large_ghost": ("large", "ghost", 1),
    "large_bn_longer": ("large", "bn", "longer"),
    "large_ghost_longer": ("large", "ghost", "longer"),
}
COMPARISONS = (
    (
        "final test accuracy, large batch: ghost BN - BN",
        "accuracy_large_ghost",
        "accuracy_large_bn",
        +1,
    ),
    (
        "final test accuracy, small - large batch (the gap)",
        "accuracy_small_bn",
        "accuracy_large_bn",
        +1,
    ),
    (
        "final test accuracy, large batch trained longer - same epochs (BN)",
        "accuracy_large_bn_longer",
        "accuracy_large_bn",
        +1,
    ),
    (
        "test accuracy with precise BN statistics, large batch: ghost BN - BN",
        "precise_accuracy_large_ghost",
        "precise_accuracy_large_bn",
        +1,
    ),
    (
        "test accuracy with precise BN statistics, small - large batch",
        "precise_accuracy_small_bn",
        "precise_accuracy_large_bn",
        +1,
    ),
    (
        "final test accuracy, large batch longer: ghost BN - BN",
        "accuracy_large_ghost_longer",
        "accuracy_large_bn_longer",
        +1,
    ),
)


DEFAULT = {
    "train": None,
    "test": None,
    "small_batch": 125,
    "large_batch": 2000,
    "virtual_batch_size": 125,
    "epochs": 30,
    "longer": 4,
    "lr": 0.05,
    "momentum": 0.9,
    "channels": 32,
}
QUICK = {
    "train": 500,
    "test": 200,
    "small_batch": 25,
    "large_batch": 100,
    "virtual_batch_size": 25,
    "epochs": 2,
    "longer": 2,
    "channels": 8,
}


def setup_text(s):
    ratio = s["large_batch"] // s["small_batch"]
    return (
        f"MNIST-1D ({s['train'] or 4000} train / {s['test'] or 1000} test), 1-D CNN (3 conv k5, "
        f"{s['channels']} channels), SGD momentum {s['momentum']}; batch {s['small_batch']} at "
        f"lr {s['lr']} vs batch {s['large_batch']} at lr {s['lr']} x sqrt({ratio}), "
        f"{s['epochs']} epochs, BN vs ghost BN (virtual batch {s['virtual_batch_size']}); "
        f"regime adaptation: the large batch for {s['longer']}x the epochs."
    )


def _run_arm(seed, s, mnist, name):
    kind, norm, epochs = ARMS[name]
    batch_size = s[f"{kind}_batch"]
    lr = s["lr"] * math.sqrt(batch_size / s["small_batch"])
    epochs = s["epochs"] * (s["longer"] if epochs == "longer" else epochs)
    keras.utils.set_random_seed(seed)
    options = {"virtual_batch_size": s["virtual_batch_size"]}
    model = models.cnn1d(
        mnist.x_train.shape[1:], mnist.num_classes, norm, options, channels=s["channels"]
    )
    steps = epochs * (len(mnist.x_train) // batch_size)
    curve = training.train(
        model,
        mnist,
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        momentum=s["momentum"],
        seed=seed,
        eval_every=max(1, steps // 5),
        name=f"ghost seed {seed} {name}",
    )
    curve["final_train_loss"] = training.evaluate(model, mnist.x_train, mnist.y_train)[1]
    # Few steps leave BN's moving averages far from the population statistics; the
    # same network with precise statistics (one pass over the training set) tells
    # that apart from generalization.
    one_epoch = [
        mnist.x_train[start : start + batch_size]
        for start in range(0, len(mnist.x_train) - batch_size + 1, batch_size)
    ]
    with probes.precise_bn(model, one_epoch, len(one_epoch)):
        curve["precise_test_accuracy"] = training.evaluate(model, mnist.x_test, mnist.y_test)[0]
        curve["precise_train_loss"] = training.evaluate(model, mnist.x_train, mnist.y_train)[1]
    return curve


def run_seed(seed, s):
    mnist = data.mnist1d().subset(s["train"], s["test"])
    curves = {name: _run_arm(seed, s, mnist, name) for name in ARMS}
    metrics = {}
    for name, curve in curves.items():
        metrics[f"accuracy_{name}"] = curve["test_accuracy"][-1]
        metrics[f"train_loss_{name}"] = curve["final_train_loss"]
        metrics[f"precise_accuracy_{name}"] = curve["precise_test_accuracy"]
        metrics[f"precise_train_loss_{name}"] = curve["precise_train_loss"]
    return {"metrics": metrics, "curves": curves}


def result_text(record):
    m = report.means(record)
    rows = ", ".join(
        f"{name.replace('_', ' ')} {m[f'accuracy_{name}']:.3f} / "
        f"{m[f'precise_accuracy_{name}']:.3f}"
        for name in ARMS
    )
    gap = m["accuracy_small_bn"] - m["accuracy_large_bn"]
    closed = {
        name: (m[f"accuracy_{name}"] - m["accuracy_large_bn"]) / gap if gap > 0 else None
        for name in ("large_ghost", "large_bn_longer", "large_ghost_longer")
    }
    closed_text = ", ".join(
        f"{name.replace('_', ' ')} {value:.0%}"
        for name, value in closed.items()
        if value is not None
    )
    return (
        f"final test accuracy with moving averages / with precise BN statistics: {rows}."
        + (f" Share of the small/large gap closed: {closed_text}." if closed_text else "")
        + " "
        + _diagnosis(m)
    )


def _diagnosis(m):
    """What precise statistics and training losses say about the large-batch gap."""
    notes = []
    stale = m["precise_accuracy_large_bn"] - m["accuracy_large_bn"]
    if stale > 0.02:
        notes.append(
            f"With precise statistics the large batch scores {stale:.3f} higher: part of its "
            "deficit is BN's moving averages, which few steps leave far from the data."
        )
    small, large = m["precise_train_loss_small_bn"], m["precise_train_loss_large_bn"]
    if large > small:
        notes.append(
            f"The large batch also fits the training set worse (train loss {large:.3f} vs "
            f"{small:.3f}, precise statistics): part of its gap is too few updates."
        )
    else:
        notes.append(
            f"The large batch fits the training set as well (train loss {large:.3f} vs "
            f"{small:.3f}, precise statistics): its gap is one of generalization."
        )
    return " ".join(notes)


def plot(record, workdir):
    fig, (ax,) = report.figure(1, width=6.0)
    report.accuracy_bars(ax, record, list(ARMS))
    ax.set(ylabel="final test accuracy", title="small vs large batch, BN vs ghost BN")
    return [report.save_figure(fig, workdir, FIGURES[0])]
