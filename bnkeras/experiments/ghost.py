"""`ghost`: Hoffer et al. (2017): ghost BN and regime adaptation close the large-batch gap.

A 1-D CNN on MNIST-1D trains with a small batch and with an 8x larger batch
(learning rate scaled by sqrt(8), the paper's rule). For the same number of
epochs: the large batch with plain BN and with ghost BN
(`bnkeras.GhostBatchNormalization`, statistics of virtual batches of the small
batch's size). Regime adaptation: the large batch with ghost BN trained for
exactly as many updates as the small batch (`regime_steps`), i.e. 8x the epochs.

Every arm is evaluated twice: with BN's moving averages (EMA) and with precise
statistics (one pass over the training set with the weights frozen,
`probes.precise_bn`). The claims read the precise-statistics accuracies: the
large batch makes few updates, which leaves the EMA (momentum 0.99) far from the
statistics of its final weights, a deficit of the EMA and not of
generalization; the `stale_ema` check measures it on the same networks.
"""

import math

import keras

from bnkeras.experiments import data, models, probes, report, training
from bnkeras.experiments.protocol import Claim, Comparison, Precondition, Protocol

NAME = "ghost"
CLAIM = (
    "Hoffer et al. 2017 (Train longer, generalize better): the generalization gap of large "
    "batches comes from too few updates; with sqrt learning-rate scaling, ghost batch "
    "normalization (statistics of small virtual batches) narrows it and regime adaptation "
    "(as many updates as the small batch) closes it."
)
FIGURES = ("ghost.png",)
# name -> (batch kind, norm, regime: "epochs" (same epochs as the small batch) or "updates")
ARMS = {
    "small_bn": ("small", "bn", "epochs"),
    "large_bn": ("large", "bn", "epochs"),
    "large_ghost": ("large", "ghost", "epochs"),
    "large_ghost_ra": ("large", "ghost", "updates"),
}
EQUIVALENCE_MARGIN = 0.02  # test accuracy, fixed before the runs
_GAP = Precondition(
    "the large batch has a generalization gap: the small batch scores higher than the large "
    "batch with BN (same epochs, precise statistics)",
    Comparison("precise_accuracy_small_bn", "precise_accuracy_large_bn"),
)
PROTOCOL = Protocol(
    claims=(
        Claim(
            "ghost_narrows",
            "Ghost BN (statistics of small virtual batches) narrows the large-batch "
            "generalization gap: the large batch with ghost BN generalizes better than with BN.",
            "test accuracy (fraction of 1000 test sequences) with precise BN statistics after "
            "the same epochs, large batch: ghost BN minus BN",
            Comparison("precise_accuracy_large_ghost", "precise_accuracy_large_bn"),
            (_GAP,),
        ),
        Claim(
            "ra_closes",
            "With regime adaptation (as many updates as the small batch) and ghost BN, the "
            "large batch generalizes as well as the small batch.",
            "test accuracy with precise statistics, large batch with ghost BN after as many "
            "updates as the small batch minus the small batch; equivalent within "
            f"{EQUIVALENCE_MARGIN} (two one-sided tests)",
            Comparison(
                "precise_accuracy_large_ghost_ra",
                "precise_accuracy_small_bn",
                "equivalent",
                margin=EQUIVALENCE_MARGIN,
            ),
            (_GAP,),
        ),
        Claim(
            "ra_improves",
            "The gap comes from too few updates: the large batch with ghost BN trained for as "
            "many updates as the small batch generalizes better than after the same epochs.",
            "test accuracy with precise statistics, large batch with ghost BN: equal updates "
            "minus equal epochs",
            Comparison("precise_accuracy_large_ghost_ra", "precise_accuracy_large_ghost"),
            (_GAP,),
        ),
        Claim(
            "stale_ema",
            "(This setup's measurement check, not a claim of the paper.) After few large-batch "
            "updates BN's moving averages lag the weights: the same network scores higher with "
            "precise statistics than with its EMA, which is why the claims use precise "
            "statistics.",
            "test accuracy of the large batch with BN after the same epochs, precise statistics "
            "minus EMA, the same network per seed",
            Comparison("precise_accuracy_large_bn", "accuracy_large_bn", test="paired"),
        ),
    ),
    limitations=(
        "MNIST-1D (4000 training sequences) with a 3-layer 1-D CNN, batches 125 vs 1000 (8x; "
        "the paper goes to 4096 vs 128 on CIFAR and ImageNet), a constant learning rate and no "
        "augmentation or weight decay. Accuracies use precise BN statistics, the paper's "
        "models their moving averages after long training where the two agree. The "
        f"equivalence margin ({EQUIVALENCE_MARGIN}) was fixed before the runs; a smaller true "
        "difference cannot be excluded."
    ),
)


DEFAULT = {
    "train": None,
    "test": None,
    "small_batch": 125,
    "large_batch": 1000,
    "virtual_batch_size": 125,
    "epochs": 20,
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
    "channels": 8,
}


def setup_text(s):
    ratio = s["large_batch"] // s["small_batch"]
    return (
        f"MNIST-1D ({s['train'] or 4000} train / {s['test'] or 1000} test), 1-D CNN (3 conv k5, "
        f"{s['channels']} channels), SGD momentum {s['momentum']}; batch {s['small_batch']} at "
        f"lr {s['lr']} vs batch {s['large_batch']} at lr {s['lr']} x sqrt({ratio}), "
        f"{s['epochs']} epochs, BN vs ghost BN (virtual batch {s['virtual_batch_size']}); "
        "regime adaptation: the large batch with ghost BN for as many updates as the small "
        "batch. Test accuracy with moving averages and with precise statistics."
    )


def regime_steps(num_examples, s, kind, regime):
    """Updates of an arm: `epochs` epochs of its batch, or (regime "updates") as many
    updates as the small batch makes in `epochs` epochs (Hoffer et al.'s regime adaptation)."""
    if regime not in ("epochs", "updates"):
        raise ValueError(f"regime must be 'epochs' or 'updates'; got {regime!r}")
    batch = s["small_batch"] if regime == "updates" else s[f"{kind}_batch"]
    return s["epochs"] * (num_examples // batch)


def _run_arm(seed, s, mnist, name):
    kind, norm, regime = ARMS[name]
    batch_size = s[f"{kind}_batch"]
    lr = s["lr"] * math.sqrt(batch_size / s["small_batch"])
    steps = regime_steps(len(mnist.x_train), s, kind, regime)
    keras.utils.set_random_seed(seed)
    options = {"virtual_batch_size": s["virtual_batch_size"]}
    model = models.cnn1d(
        mnist.x_train.shape[1:], mnist.num_classes, norm, options, channels=s["channels"]
    )
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
    curve["updates"] = steps
    # Precise statistics: one pass over the training set in the arm's batches.
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
        metrics[f"precise_accuracy_{name}"] = curve["precise_test_accuracy"]
        metrics[f"precise_train_loss_{name}"] = curve["precise_train_loss"]
    return {"metrics": metrics, "curves": curves}


def result_text(record):
    m, n = report.means(record), len(record["seeds"])
    updates = report.seed_curves(record)[0]
    rows = ", ".join(
        f"{name.replace('_', ' ')} {m[f'precise_accuracy_{name}']:.3f} "
        f"(EMA {m[f'accuracy_{name}']:.3f}; {updates[name]['updates']} updates)"
        for name in ARMS
    )
    gap = m["precise_accuracy_small_bn"] - m["precise_accuracy_large_bn"]
    return (
        f"Test accuracy with precise BN statistics, means over {n} seeds: {rows}. Gap small - "
        f"large (BN, same epochs) {gap:+.3f}. Training loss with precise statistics: small "
        f"{m['precise_train_loss_small_bn']:.3f}, large BN {m['precise_train_loss_large_bn']:.3f}"
        f", large ghost {m['precise_train_loss_large_ghost']:.3f}, large ghost with equal "
        f"updates {m['precise_train_loss_large_ghost_ra']:.3f}."
    )


def plot(record, workdir):
    m = record["metrics"]
    updates = report.seed_curves(record)[0]
    fig, axes = report.figure(3, width=4.4)
    labels = [
        f"{name.replace('_ra', '').replace('_', chr(10))}\n{updates[name]['updates']} upd."
        for name in ARMS
    ]
    positions = list(range(len(ARMS)))
    for ax, key, title in (
        (axes[0], "precise_accuracy", "precise BN statistics (the claims)"),
        (axes[1], "accuracy", "moving averages (EMA), same networks"),
    ):
        report.seed_points(ax, positions, [m[f"{key}_{name}"]["per_seed"] for name in ARMS], labels)
        ax.set(title=title)
        report.accuracy_axis(ax, "test accuracy (fraction correct)")
    low = min(ax.get_ylim()[0] for ax in axes[:2])
    for ax in axes[:2]:
        ax.set_ylim(low, 1.0)
    losses = [m[f"precise_train_loss_{name}"]["per_seed"] for name in ARMS]
    report.seed_points(axes[2], positions, losses, labels)
    axes[2].set_yscale("log")
    axes[2].set(title="fit of the training set", ylabel="training loss, precise statistics (nats)")
    return [report.save_figure(fig, workdir, FIGURES[0])]
