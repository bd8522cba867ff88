"""How much of the shared reward's variance the epoch index explains, before and after the counterfactual reward
(issue 14, item 1; target below 10%).

For each (seed, fold) it reads the pseudo-Dice EMA curves of a run (``--trainer``) and of the seeded baseline of
the same fold and seed (``--baseline``) from their ``checkpoint_final.pth``, and forms three per-epoch rewards
before normalisation (``hypera_nnunet.control.rewards.RewardShaper.raw_shared``):

* ``plain``: the change of the run's EMA (today's shared term);
* ``counterfactual``: that change minus the same-seed baseline's change at the same epoch;
* ``reference``: that change minus the change of the mean baseline curve of the *other* seeds of the same fold
  (the store's fallback when a run's own seed has no baseline).

Epoch index's share of the variance is reported three ways, over all runs pooled: eta^2 (one mean per epoch; biased
upwards with few runs per epoch, by about (E - 1) / (N - 1) under no effect), epsilon^2 (its bias-corrected form)
and the R^2 of a cubic in the epoch (4 parameters).

    python benchmarks/reward_variance.py --results $nnUNet_results/hypera_seeded --dataset Dataset004_Hippocampus \
        --trainer HyperaTrainer_50epochs_25iters --baseline nnUNetTrainer_50epochs_25iters \
        --plans hyperaCPU2dB16Plans --configuration 2d --seeds 0 1 --folds 0 1 2 3 4 \
        --out docs/bench/cpu_v3_reward_variance.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def curve(root: Path, seed: int, dataset: str, trainer: str, plans: str, configuration: str, fold: int):
    path = root / f"seed{seed}" / dataset / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}" / \
        "checkpoint_final.pth"
    if not path.is_file():
        return None
    return np.asarray(torch.load(path, map_location="cpu", weights_only=False)["logging"]["ema_fg_dice"], float)


def deltas(c: np.ndarray) -> np.ndarray:
    return np.diff(c, prepend=c[0])


def explained(rewards: np.ndarray) -> dict:
    """Epoch index's share of the variance of ``rewards`` (runs x epochs)."""
    n, e = rewards.shape
    grand = rewards.mean()
    ss_total = float(((rewards - grand) ** 2).sum())
    ss_between = float(n * ((rewards.mean(0) - grand) ** 2).sum())
    ss_within = ss_total - ss_between
    ms_within = ss_within / (n * e - e) if n > 1 else float("nan")
    x = np.tile(np.arange(e, dtype=float), n)
    coef = np.polyfit(x, rewards.ravel(), 3)
    resid = rewards.ravel() - np.polyval(coef, x)
    return {"eta2": round(ss_between / ss_total, 4),
            "epsilon2": round((ss_between - (e - 1) * ms_within) / ss_total, 4),
            "cubic_r2": round(1 - float((resid ** 2).sum()) / ss_total, 4),
            "null_eta2_expected": round((e - 1) / (n * e - 1), 4), "runs": n, "epochs": e}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="the folder with seed<s>/ results roots")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--plans", required=True)
    ap.add_argument("--configuration", default="2d")
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--baseline-seeds", nargs="+", type=int, default=None,
                    help="seeds of baselines for the 'reference' fallback (default: --seeds)")
    ap.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    base_seeds = a.baseline_seeds or a.seeds
    rows = {"plain": [], "counterfactual": [], "reference": []}
    used = []
    for s in a.seeds:
        for f in a.folds:
            run = curve(a.results, s, a.dataset, a.trainer, a.plans, a.configuration, f)
            base = curve(a.results, s, a.dataset, a.baseline, a.plans, a.configuration, f)
            others = [c for t in base_seeds if t != s
                      for c in [curve(a.results, t, a.dataset, a.baseline, a.plans, a.configuration, f)]
                      if c is not None]
            if run is None or base is None or not others:
                continue
            d = deltas(run)
            rows["plain"].append(d)
            rows["counterfactual"].append(d - deltas(base))
            rows["reference"].append(d - deltas(np.mean(others, axis=0)))
            used.append(f"seed{s}_fold{f}")
    if not used:
        raise SystemExit("no (seed, fold) has a run, its baseline and another seed's baseline")
    result = {"runs": used, "trainer": a.trainer, "baseline": a.baseline,
              "explained_by_epoch": {k: explained(np.asarray(v)) for k, v in rows.items()},
              "sd": {k: round(float(np.asarray(v).std()), 5) for k, v in rows.items()}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
