"""`curves.png` of a training run: loss, top-1 accuracy and learning rate per epoch."""

from pathlib import Path

from bnkeras.training.files import replacing


def plot_curves(workdir, rows, top1=None, best_epoch=None):
    """Writes `workdir/curves.png` from the rows of `log.csv`.

    Args:
        workdir: The run's work directory; its name is the title's run name.
        rows: The `log.csv` rows (dicts with epoch, lr, loss, accuracy, val_loss,
            val_accuracy), oldest first. Nothing is written without rows.
        top1: The run's final top-1 accuracy, shown in the title.
        best_epoch: The epoch marked as best (default: the highest val_accuracy).

    The learning rate of an epoch is its value at the end of the epoch (as in
    `log.csv`).
    """
    if not rows:
        return
    # A Figure of its own, without pyplot: the process's backend and figures (a
    # notebook's, say) are left as they were.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in rows]
    if best_epoch is None:
        best_epoch = max(rows, key=lambda r: r["val_accuracy"])["epoch"]
    best = next((r for r in rows if r["epoch"] == best_epoch), None)
    fig = Figure(figsize=(14, 4))
    loss, accuracy, lr = fig.subplots(1, 3)
    loss.plot(epochs, [r["loss"] for r in rows], label="train")
    loss.plot(epochs, [r["val_loss"] for r in rows], label="eval")
    loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    accuracy.plot(epochs, [r["accuracy"] for r in rows], label="train")
    accuracy.plot(epochs, [r["val_accuracy"] for r in rows], label="eval")
    if best is not None:
        accuracy.plot(
            [best_epoch],
            [best["val_accuracy"]],
            "k*",
            markersize=12,
            label=f"best eval: epoch {best_epoch:g} ({best['val_accuracy']:.4f})",
        )
    accuracy.set(xlabel="epoch", ylabel="top-1 accuracy", title="Accuracy")
    lr.plot(epochs, [r["lr"] for r in rows], color="tab:green", label="lr (end of epoch)")
    lr.set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
    for axis in (loss, accuracy, lr):
        if best is not None:
            axis.axvline(best_epoch, color="grey", linestyle=":", linewidth=1)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    title = Path(workdir).resolve().name
    if top1 is not None:
        title += f": final top-1 {top1:.4f}"
    fig.suptitle(title)
    fig.tight_layout()
    with replacing(Path(workdir) / "curves.png") as tmp:  # atomic: never half a PNG
        fig.savefig(tmp, dpi=100, format="png")
