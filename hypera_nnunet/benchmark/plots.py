"""PNG plots: learning curves per trainer (one line per fold) and the agents' multiplier trajectories."""

from __future__ import annotations

from pathlib import Path

from hypera_nnunet.benchmark.collect import FoldResult, trajectories
from hypera_nnunet.common.atomic_io import atomic_write


def _save(fig, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))


def plot_learning_curves(folds_by_trainer: dict[str, list[FoldResult]], path: Path) -> Path | None:
    """Train loss, validation loss and nnU-Net's pseudo Dice per epoch; one colour per trainer, one line per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(f.curves for fs in folds_by_trainer.values() for f in fs):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    keys = (("train_losses", "train loss"), ("val_losses", "validation loss"), ("mean_fg_dice", "pseudo Dice (fg)"))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ti, (trainer, folds) in enumerate(folds_by_trainer.items()):
        c = colours[ti % len(colours)]
        for fi, f in enumerate(folds):
            for ax, (k, _) in zip(axes, keys):
                ys = f.curves.get(k, [])
                ax.plot(range(len(ys)), ys, color=c, alpha=0.7, lw=1.2, label=trainer if fi == 0 else None)
    for ax, (_, title) in zip(axes, keys):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_trajectories(folds: list[FoldResult], path: Path, title: str) -> Path | None:
    """Each knob's multiplier of nnU-Net's value per epoch (1.0 = unchanged), one line per fold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trajs = [(f.fold, trajectories(f)) for f in folds]
    knobs = sorted({k for _, t in trajs for k in t})
    if not knobs:
        return None
    ncol = min(3, len(knobs))
    nrow = (len(knobs) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.2 * nrow), squeeze=False)
    for ax, k in zip(axes.flat, knobs):
        for fold, t in trajs:
            ys = t.get(k, [])
            ax.plot(range(len(ys)), ys, lw=1.2, label=f"fold {fold}")
        ax.axhline(1.0, color="k", ls="--", lw=0.8)
        ax.set_title(k)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(knobs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}: multiplier of nnU-Net's value")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
