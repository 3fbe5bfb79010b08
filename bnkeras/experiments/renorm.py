"""`renorm`: Ioffe (2017): batch renormalization with microbatches and non-i.i.d. batches.

(a) Microbatches: batches of 32 split into microbatches of 4 that are
normalized separately: BN on the microbatches (ghost BN, virtual batch 4) vs
batch renorm on the same microbatches vs BN on the whole batch of 32.
(b) Non-i.i.d. batches, each drawn from two classes: BN vs batch renorm. All
are evaluated with their moving statistics (plain inference). The VGG-like CNN
trains on bnkeras_shapes; renorm uses constant clips rmax, dmax from step 0
(the paper's warm-up is defined over tens of thousands of steps). Both renorm
arms run again with `renorm_bias_correction=True`, whose renorm statistics are
averages of the batches seen from step 1 instead of moving away from their
initial values 0 and 1 over the first hundreds of steps.
"""

import keras
import numpy as np

from bnkeras.experiments import data, models, report, training

NAME = "renorm"
CLAIM = (
    "Ioffe 2017 (Batch Renormalization): with small microbatches (4 per group) BN loses "
    "accuracy and renorm recovers most of it; with non-i.i.d. batches BN's training and "
    "inference statistics disagree and renorm trains a markedly better model."
)
FIGURES = ("renorm.png",)
# name -> (norm, virtual batch size or None, non-i.i.d. batches, bias-corrected start-up)
ARMS = {
    "bn_full": ("bn", None, False, False),
    "bn_micro": ("ghost", "micro", False, False),
    "renorm_micro": ("renorm", "micro", False, False),
    "renorm_micro_startup": ("renorm", "micro", False, True),
    "bn_noniid": ("bn", None, True, False),
    "renorm_noniid": ("renorm", None, True, False),
    "renorm_noniid_startup": ("renorm", None, True, True),
}
COMPARISONS = (
    ("microbatches: renorm - BN (test accuracy)", "accuracy_renorm_micro", "accuracy_bn_micro", +1),
    (
        "non-i.i.d. batches: renorm - BN (test accuracy)",
        "accuracy_renorm_noniid",
        "accuracy_bn_noniid",
        +1,
    ),
    ("BN on the whole batch - BN on microbatches", "accuracy_bn_full", "accuracy_bn_micro", +1),
    (
        "microbatches: renorm with bias-corrected start-up - plain renorm",
        "accuracy_renorm_micro_startup",
        "accuracy_renorm_micro",
        +1,
    ),
    (
        "non-i.i.d. batches: renorm with bias-corrected start-up - plain renorm",
        "accuracy_renorm_noniid_startup",
        "accuracy_renorm_noniid",
        +1,
    ),
)


DEFAULT = {
    "train": None,
    "test": None,
    "steps": 400,
    "batch_size": 32,
    "microbatch": 4,
    "lr": 0.02,
    "momentum": 0.9,
    "rmax": 1.5,
    "dmax": 0.5,
    "renorm_momentum": 0.99,
    "widths": [16, 32, 64],
}
QUICK = {"train": 256, "test": 128, "steps": 12, "batch_size": 8, "widths": [8]}


def setup_text(s):
    return (
        data.describe_shapes_vgg(s) + f", SGD lr {s['lr']} momentum {s['momentum']}, batch "
        f"{s['batch_size']}, {s['steps']} steps; renorm rmax {s['rmax']}, dmax {s['dmax']}, "
        f"renorm momentum {s['renorm_momentum']} from step 0, each arm also with "
        "renorm_bias_correction=True (start-up). (a) microbatches of "
        f"{s['microbatch']}: GhostBatchNormalization vs "
        "BatchRenormalization(virtual_batch_size) vs BN at "
        f"{s['batch_size']}; (b) each batch from 2 classes: BN vs renorm."
    )


def _norm_options(s, norm, micro, startup):
    options = {}
    if micro:
        options["virtual_batch_size"] = s["microbatch"]
    if norm == "renorm":
        options.update(
            rmax=s["rmax"],
            dmax=s["dmax"],
            renorm_momentum=s["renorm_momentum"],
            renorm_bias_correction=startup,
        )
    return options


def run_seed(seed, s):
    shapes = data.shapes(s["train"], s["test"])
    metrics, curves = {}, {}
    for name, (norm, micro, non_iid, startup) in ARMS.items():
        keras.utils.set_random_seed(seed)
        model = models.vgg(
            shapes.x_train.shape[1:],
            shapes.num_classes,
            norm,
            _norm_options(s, norm, micro, startup),
            widths=s["widths"],
        )
        rng = np.random.default_rng(seed)
        batches = (
            training.two_class_batches(shapes.y_train, s["batch_size"], rng) if non_iid else None
        )
        curve = training.train_with_settings(
            model, shapes, s, seed, f"renorm seed {seed} {name}", batches=batches
        )
        metrics[f"accuracy_{name}"] = curve["test_accuracy"][-1]
        curves[name] = curve
    return {"metrics": metrics, "curves": curves}


def _closed(m, better, worse, reference):
    gap = m[reference] - m[worse]
    return None if gap <= 0 else (m[better] - m[worse]) / gap


def result_text(record):
    m = report.means(record)
    closed = _closed(m, "accuracy_renorm_micro", "accuracy_bn_micro", "accuracy_bn_full")
    return (
        f"(a) BN at full batch {m['accuracy_bn_full']:.3f}, BN on microbatches "
        f"{m['accuracy_bn_micro']:.3f}, renorm on microbatches {m['accuracy_renorm_micro']:.3f}"
        + ("" if closed is None else f" (closes {closed:.0%} of the gap)")
        + f"; (b) non-i.i.d. batches: BN {m['accuracy_bn_noniid']:.3f} vs renorm "
        f"{m['accuracy_renorm_noniid']:.3f}; bias-corrected renorm start-up: "
        f"{m['accuracy_renorm_micro_startup']:.3f} (a), {m['accuracy_renorm_noniid_startup']:.3f} (b)."
    )


def plot(record, workdir):
    fig, (ax,) = report.figure(1, width=7.5)
    colours = ["C0", "C1", "C2", "C3", "C1", "C2", "C3"]
    report.accuracy_bars(ax, record, list(ARMS), [0, 1, 2, 3, 4.5, 5.5, 6.5], colours)
    ax.set_ylabel("test accuracy (moving statistics)")
    for centre, label in ((1.5, "(a) microbatches"), (5.5, "(b) non-i.i.d. batches")):
        ax.text(centre, 1.02, label, transform=ax.get_xaxis_transform(), ha="center")
    return [report.save_figure(fig, workdir, FIGURES[0])]
