"""Learning-curve extrapolation and the HyperScore on real nnU-Net runs (issue 16, items 2 and 3).

Reads every finished run of the given trainers under ``--results`` (``seed<s>/<dataset>/<trainer>__<plans>__<c>/
fold_<f>``): the EMA pseudo-Dice by epoch (``checkpoint_final.pth``) and the final validation mean foreground Dice
(``validation/summary.json``). For each number of observed epochs k:

* **extrapolation** (:func:`hypera_nnunet.search.curves.extrapolate`): the predicted EMA at the last epoch from
  epochs 1..k, against the actual last-epoch EMA and the final Dice: mean absolute error, Spearman's rho, and the
  share of runs whose actual value is within the prediction +- 2 sd (the ensemble's own uncertainty);
* **HyperScore** (:func:`hypera_nnunet.search.hyperscore.fit_hyperscore`): fitted on the EMA at epoch k (low
  fidelity) against the final Dice; its rho against that of the EMA itself;
* the same on the multi-fidelity Hartmann-6 objective (``--hartmann N`` random configurations, fidelity 3/27).

Writes JSON and a calibration plot (predicted against actual final EMA, one panel per k).

    python benchmarks/curve_extrapolation.py --results $nnUNet_results/hypera_seeded --dataset Dataset004_Hippocampus \
        --trainers nnUNetTrainer_50epochs_25iters HyperaTrainer_50epochs_25iters --plans hyperaCPU2dB16Plans \
        --configuration 2d --out docs/bench/cpu_v3_curve_extrapolation.json --plot docs/img/curve_calibration.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from hypera_nnunet.search.curves import extrapolate
from hypera_nnunet.search.hyperscore import fit_hyperscore

KS = (10, 15, 20, 30)


def runs(root: Path, dataset: str, trainers, plans: str, configuration: str) -> list[dict]:
    out = []
    for seed_dir in sorted(root.glob("seed*")):
        for tr in trainers:
            for fold in sorted((seed_dir / dataset / f"{tr}__{plans}__{configuration}").glob("fold_*")):
                s, c = fold / "validation" / "summary.json", fold / "checkpoint_final.pth"
                if not (s.is_file() and c.is_file()):
                    continue
                ema = torch.load(c, map_location="cpu", weights_only=False)["logging"]["ema_fg_dice"]
                out.append({"run": f"{tr} {seed_dir.name} {fold.name}", "ema": [float(x) for x in ema],
                            "final": float(json.loads(s.read_text())["foreground_mean"]["Dice"])})
    return out


def _rho(a, b) -> float:
    return float(spearmanr(a, b).statistic)


def measure(rs: list[dict]) -> dict:
    out = {}
    for k in KS:
        pred, sd, last, final, low = [], [], [], [], []
        for r in rs:
            n = len(r["ema"])
            if n <= k:
                continue
            ex = extrapolate(r["ema"][:k], n)
            pred.append(ex.mean)
            sd.append(ex.sd)
            last.append(r["ema"][-1])
            final.append(r["final"])
            low.append(r["ema"][k - 1])
        pred, sd, last, final = map(np.asarray, (pred, sd, last, final))
        hs = fit_hyperscore(low, final, n_trials=150)
        out[str(k)] = {
            "runs": len(pred), "mae_last_ema": round(float(np.abs(pred - last).mean()), 4),
            "mae_final_dice": round(float(np.abs(pred - final).mean()), 4),
            "rho_pred_final": round(_rho(pred, final), 4), "rho_ema_k_final": round(_rho(low, final), 4),
            "within_2sd_last_ema": round(float(np.mean(np.abs(pred - last) <= 2 * sd)), 3),
            "hyperscore": {k2: (round(v, 4) if isinstance(v, float) else v) for k2, v in hs.items()},
            "points": {"pred": pred.round(4).tolist(), "last_ema": last.round(4).tolist()}}
    return out


def hartmann(n: int, seed: int = 0) -> dict:
    from hypera_nnunet.search.objectives import hartmann_score

    rng = np.random.default_rng(seed)
    xs = rng.uniform(0, 1, (n, 6))
    low = np.array([hartmann_score(x, 3 / 27, float(rng.standard_normal())) for x in xs])
    full = np.array([hartmann_score(x, 1.0) for x in xs])
    shift = 1e-3 - min(0.0, low.min())  # the HyperScore takes ln V: make V positive, which keeps its order
    return fit_hyperscore(low + shift, full, n_trials=150)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(KS), figsize=(4 * len(KS), 4), sharex=True, sharey=True)
    for ax, k in zip(axes, KS):
        pts = result["nnunet"][str(k)]["points"]
        ax.scatter(pts["last_ema"], pts["pred"], s=14)
        lo, hi = 0.5, 0.95
        ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
        ax.set_title(f"after {k} of 50 epochs (MAE {result['nnunet'][str(k)]['mae_last_ema']:.3f})")
        ax.set_xlabel("actual EMA pseudo-Dice, last epoch")
    axes[0].set_ylabel("extrapolated")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--trainers", nargs="+", required=True)
    ap.add_argument("--plans", required=True)
    ap.add_argument("--configuration", default="2d")
    ap.add_argument("--hartmann", type=int, default=200)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--plot", type=Path, default=None)
    a = ap.parse_args()
    rs = runs(a.results, a.dataset, a.trainers, a.plans, a.configuration)
    result = {"runs": [r["run"] for r in rs], "nnunet": measure(rs), "hartmann_hyperscore": hartmann(a.hartmann)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    if a.plot:
        plot(result, a.plot)
    print(json.dumps({k: {x: v[x] for x in v if x != "points"} for k, v in result["nnunet"].items()}, indent=1))
    print(json.dumps(result["hartmann_hyperscore"], indent=1))


if __name__ == "__main__":
    main()
