"""`renorm`: Ioffe (2017): batch renormalization with microbatches and non-i.i.d. batches.

The VGG-like CNN trains on the hard configuration of bnkeras_shapes (20 classes;
the default set is at ceiling) with SGD and momentum, batches of 32.
(a) Microbatches: each batch of 32 is normalized in microbatches of k images
(ghost BN, `GhostBatchNormalization(k)`) vs batch renorm on the same
microbatches (`BatchRenormalization(virtual_batch_size=k)`) vs BN on the whole
batch of 32. (b) Non-i.i.d. batches as in the paper (section 4.2): each batch of
32 holds 16 random classes x 2 images; BN vs batch renorm, and BN on i.i.d.
batches for reference. Every arm is evaluated with its moving statistics (plain
inference). Renorm uses constant clips rmax, dmax from step 0 (the paper's
warm-up is defined over tens of thousands of steps).
"""

import keras
import numpy as np

from bnkeras.experiments import data, models, report, training
from bnkeras.experiments.protocol import Claim, Comparison, Precondition, Protocol

NAME = "renorm"
CLAIM = (
    "Ioffe 2017 (Batch Renormalization): with small microbatches (4 per group) BN loses "
    "accuracy and renorm recovers most of it; with non-i.i.d. batches (16 classes x 2 images "
    "per batch of 32) BN's training and inference statistics disagree and renorm trains a "
    "markedly better model."
)
FIGURES = ("renorm.png",)
# name -> (norm, normalized in microbatches, non-i.i.d. batches)
ARMS = {
    "bn_full": ("bn", False, False),
    "bn_micro": ("ghost", True, False),
    "renorm_micro": ("renorm", True, False),
    "bn_noniid": ("bn", False, True),
    "renorm_noniid": ("renorm", False, True),
}
_MICRO_LOSES = Precondition(
    "BN on microbatches loses accuracy: BN on the whole batch scores higher than BN on "
    "microbatches",
    Comparison("accuracy_bn_full", "accuracy_bn_micro"),
)
PROTOCOL = Protocol(
    claims=(
        Claim(
            "micro_improves",
            "With small microbatches, batch renorm trains a better model than BN on the same "
            "microbatches.",
            "test accuracy (fraction of 2000 test images, moving statistics) after the last "
            "step, renorm minus BN, both normalizing microbatches",
            Comparison("accuracy_renorm_micro", "accuracy_bn_micro"),
            (_MICRO_LOSES,),
        ),
        Claim(
            "micro_recovers_most",
            "Renorm recovers most of the accuracy that BN loses on microbatches.",
            "per seed: renorm on microbatches minus the midpoint of BN on microbatches and BN "
            "on the whole batch (> 0: more than half of the gap recovered); one-sample t over "
            "seeds",
            Comparison("renorm_micro_over_midpoint", value=0.0),
            (_MICRO_LOSES,),
        ),
        Claim(
            "noniid_hurts_bn",
            "With non-i.i.d. batches (16 classes x 2 images) BN's inference statistics do not "
            "match training, and BN trains a worse model than on i.i.d. batches.",
            "test accuracy after the last step, BN on i.i.d. batches minus BN on 16x2 batches",
            Comparison("accuracy_bn_full", "accuracy_bn_noniid"),
        ),
        Claim(
            "noniid_renorm",
            "With non-i.i.d. batches, batch renorm trains a markedly better model than BN.",
            "test accuracy after the last step, renorm minus BN, both on 16x2 batches",
            Comparison("accuracy_renorm_noniid", "accuracy_bn_noniid"),
        ),
    ),
    limitations=(
        "A 6-layer CNN on 32x32 synthetic shapes with 20 classes for a few hundred steps, not "
        "Inception on ImageNet (1000 classes) for 100k+ steps. With 20 classes a random batch "
        "of 32 already holds about 16 classes, so 16 classes x 2 images differs from i.i.d. "
        "mainly in that every image has a same-class partner in its batch, a milder "
        "departure than 16 of 1000 classes. Renorm's clips are constant from step 0 "
        "(no warm-up) and its hyperparameters are the ones stated, not tuned here. 'Markedly' "
        "is tested as 'greater'; the size is the reported effect. Microbatches are of 2 "
        "images, not the paper's 4 (see below)."
    ),
    post_hoc=(
        "Microbatches of 2 (the paper: 4) were chosen after a 1-seed trial run on the hard "
        "data (400 steps): BN on microbatches of 4 scored 0.276 vs 0.293 for BN on the whole "
        "batch (no measurable loss, so part (a) could not test a recovery), on microbatches of "
        "2 it scored 0.208; renorm on microbatches of 4 scored 0.312.",
    ),
)


DEFAULT = {
    "data": "hard",
    "train": None,
    "test": None,
    "steps": 400,
    "batch_size": 32,
    "microbatch": 2,
    "classes_per_batch": 16,
    "lr": 0.02,
    "momentum": 0.9,
    "rmax": 1.5,
    "dmax": 0.5,
    "renorm_momentum": 0.99,
    "widths": [8, 16, 32],
}
QUICK = {
    "train": 400,
    "test": 100,
    "steps": 12,
    "batch_size": 8,
    "microbatch": 2,
    "classes_per_batch": 4,
    "widths": [8],
}


def setup_text(s):
    per_class = s["batch_size"] // s["classes_per_batch"]
    return (
        data.describe_shapes_vgg(s) + f", SGD lr {s['lr']} momentum {s['momentum']}, batch "
        f"{s['batch_size']}, {s['steps']} steps; renorm rmax {s['rmax']}, dmax {s['dmax']}, "
        f"renorm momentum {s['renorm_momentum']} from step 0. (a) microbatches of "
        f"{s['microbatch']}: GhostBatchNormalization vs "
        "BatchRenormalization(virtual_batch_size) vs BN on the whole batch of "
        f"{s['batch_size']}; (b) each batch {s['classes_per_batch']} classes x {per_class} "
        "images: BN vs renorm. Moving statistics at test time."
    )


def _norm_options(s, norm, micro):
    options = {}
    if micro:
        options["virtual_batch_size"] = s["microbatch"]
    if norm == "renorm":
        options.update(rmax=s["rmax"], dmax=s["dmax"], renorm_momentum=s["renorm_momentum"])
    return options


def noniid_batches(labels, s, rng):
    """The paper's non-i.i.d. batches: `classes_per_batch` classes x the rest of the batch."""
    per_class, rest = divmod(s["batch_size"], s["classes_per_batch"])
    if rest:
        raise ValueError(
            f"batch_size ({s['batch_size']}) must be a multiple of classes_per_batch "
            f"({s['classes_per_batch']})"
        )
    return training.class_group_batches(labels, s["classes_per_batch"], per_class, rng)


def over_midpoint(recovered, worse, reference):
    """`recovered` minus the midpoint of `worse` and `reference`: > 0 when more than half
    of the gap from `worse` to `reference` is recovered (a gap that is not there, too)."""
    return recovered - 0.5 * (worse + reference)


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"], config=s["data"])
    metrics, curves = {}, {}
    for name, (norm, micro, non_iid) in ARMS.items():
        keras.utils.set_random_seed(seed)
        model = models.vgg(
            shapes.x_train.shape[1:],
            shapes.num_classes,
            norm,
            _norm_options(s, norm, micro),
            widths=s["widths"],
        )
        rng = np.random.default_rng(seed)
        batches = noniid_batches(shapes.y_train, s, rng) if non_iid else None
        curve = training.train_with_settings(
            model, shapes, s, seed, f"renorm seed {seed} {name}", batches=batches
        )
        metrics[f"accuracy_{name}"] = curve["test_accuracy"][-1]
        curves[name] = curve
    metrics["renorm_micro_over_midpoint"] = over_midpoint(
        metrics["accuracy_renorm_micro"], metrics["accuracy_bn_micro"], metrics["accuracy_bn_full"]
    )
    return {"metrics": metrics, "curves": curves}


def result_text(record):
    m, n = report.means(record), len(record["seeds"])
    gap = m["accuracy_bn_full"] - m["accuracy_bn_micro"]
    recovered = m["accuracy_renorm_micro"] - m["accuracy_bn_micro"]
    share = f" (renorm recovers {recovered / gap:.0%} of the mean gap)" if gap > 0 else ""
    return (
        f"Test accuracy, means over {n} seeds: (a) BN on the whole batch "
        f"{m['accuracy_bn_full']:.3f}, BN on microbatches {m['accuracy_bn_micro']:.3f} "
        f"(gap {gap:+.3f}), renorm on microbatches {m['accuracy_renorm_micro']:.3f}{share}; "
        f"(b) 16x2 batches: BN {m['accuracy_bn_noniid']:.3f}, renorm "
        f"{m['accuracy_renorm_noniid']:.3f}."
    )


def plot(record, workdir):
    m = record["metrics"]
    fig, axes = report.figure(2, width=5.0)
    curves = report.seed_curves(record)
    steps = curves[0]["bn_full"]["steps"]
    for name, colour in (
        ("bn_full", "C0"),
        ("bn_micro", "C1"),
        ("renorm_micro", "C2"),
        ("bn_noniid", "C3"),
        ("renorm_noniid", "C4"),
    ):
        report.seed_lines(
            axes[0], steps, [c[name]["test_accuracy"] for c in curves], name, color=colour
        )
    axes[0].set(xlabel="training step", title="per seed (thin) and mean (thick)")
    report.accuracy_axis(axes[0], "test accuracy, moving statistics (fraction correct)")
    axes[0].legend(fontsize=7)
    names = list(ARMS)
    report.seed_points(
        axes[1],
        [0, 1, 2, 3.5, 4.5],
        [m[f"accuracy_{name}"]["per_seed"] for name in names],
        ["(a) BN\nbatch", "(a) BN\nmicro", "(a) renorm\nmicro", "(b) BN\n16x2", "(b) renorm\n16x2"],
        ["C0", "C1", "C2", "C3", "C4"],
    )
    means = report.means(record)
    midpoint = 0.5 * (means["accuracy_bn_micro"] + means["accuracy_bn_full"])
    axes[1].hlines(midpoint, -0.4, 2.4, color="grey", linestyle="--", linewidth=1)
    axes[1].annotate("midpoint of the (a) BN arms", (2.4, midpoint), fontsize=7, va="bottom")
    axes[1].set(title="after the last step (each seed a dot)")
    report.accuracy_axis(axes[1], "test accuracy, moving statistics (fraction correct)")
    return [report.save_figure(fig, workdir, FIGURES[0])]
