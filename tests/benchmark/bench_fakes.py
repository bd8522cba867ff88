"""Fake nnU-Net folders for the benchmark tests: finished folds with hand-made Dice values, predictions, a
checkpoint's logging and (HYPERA) a decision log and ``hypera/config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DS = "Dataset999_Fake"
PLANS = "hyperaCPUPlans"
BASE = "nnUNetTrainer_20epochs_25iters"
HYP = "HyperaTrainer_20epochs_25iters"
SHAPE = (12, 14, 12)


def _write_nii(arr: np.ndarray, path: Path) -> None:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def _masks(shift: int) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=np.uint8)
    m[3 + shift:8 + shift, 3:7, 3:9] = 1
    m[3 + shift:8 + shift, 7:11, 3:9] = 2
    return m


def make_fold(root: Path, trainer: str, fold: int, dices: list[tuple[float, float]], shift: int, hypera: bool,
              epoch_s: float = 10.0, results: Path | None = None, agents: list[str] | None = None,
              ema: list[float] | None = None, hypera_seed: int | None = None) -> Path:
    """A finished fold: summary.json with the given per-case Dice, predictions, a checkpoint, decisions, and with
    ``agents`` the ``hypera/config.json`` a HYPERA trainer writes. ``ema``: the EMA pseudo Dice of its 3 epochs.
    ``hypera_seed``: a seeded run's record of its seed, in ``config.json`` when ``agents`` are given (a HYPERA
    trainer), else in the extras beside the final checkpoint (a seedable baseline)."""
    import torch

    out = (results or root / "nnUNet_results") / DS / f"{trainer}__{PLANS}__3d_fullres" / f"fold_{fold}"
    gt = root / "nnUNet_preprocessed" / DS / "gt_segmentations"
    cases = []
    for i, (d1, d2) in enumerate(dices):
        name = f"case_{fold}_{i}"
        _write_nii(_masks(0), gt / f"{name}.nii.gz")
        _write_nii(_masks(shift), out / "validation" / f"{name}.nii.gz")
        cases.append({"reference_file": str(gt / f"{name}.nii.gz"),
                      "prediction_file": str(out / "validation" / f"{name}.nii.gz"),
                      "metrics": {"1": {"Dice": d1, "IoU": 0.0}, "2": {"Dice": d2, "IoU": 0.0}}})
    mean = {"1": {"Dice": float(np.mean([d[0] for d in dices]))}, "2": {"Dice": float(np.mean([d[1] for d in dices]))}}
    (out / "validation" / "summary.json").write_text(json.dumps({"metric_per_case": cases, "mean": mean,
                                                                  "foreground_mean": {"Dice": 0.0}}))
    n = 3
    starts = [1000.0 + i * epoch_s for i in range(n)]
    torch.save({"logging": {"train_losses": [0.5, 0.3, 0.2], "val_losses": [0.6, 0.4, 0.3],
                            "mean_fg_dice": [0.2, 0.5, 0.7], "ema_fg_dice": ema or [0.2, 0.3, 0.4], "lrs": [0.01] * n,
                            "epoch_start_timestamps": starts, "epoch_end_timestamps": [s + epoch_s for s in starts]}},
               out / "checkpoint_final.pth")
    if hypera:
        (out / "hypera").mkdir()
        lines = [{"epoch": e, "multipliers": {"lr": 1.0 + 0.1 * e, "aug_prob": 1.0}, "applied": e > 0,
                  "rollback": e == 2, "phase": "learn", "rewards": {"learning_rate": 0.1 * e},
                  "overhead_s": {"learning_rate": 0.01, "coordinator": 0.01, "total": 0.02}} for e in range(n)]
        lines.append(dict(lines[1], multipliers={"lr": 9.0, "aug_prob": 1.0}))  # a resumed run repeats epoch 1
        (out / "hypera" / "decisions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    if agents is not None:
        seed = {} if hypera_seed is None else {"hypera_seed": hypera_seed}
        (out / "hypera" / "config.json").write_text(json.dumps({"trainer": trainer, "config": {}, "agents": agents,
                                                                "knobs": ["lr"], **seed}))
    elif hypera_seed is not None:  # what SeededTraining saves beside checkpoint_final (epoch n)
        (out / "hypera").mkdir(exist_ok=True)
        torch.save({"rng": {"seed": hypera_seed, "torch": torch.get_rng_state()}},
                   out / "hypera" / f"checkpoint_final.e{n:05d}.pt")
    return out
