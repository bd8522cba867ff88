"""Calibration table of a CPU protocol from seeded nnUNetTrainer runs (docs/benchmark_protocol.md, cpu-v3).

For every (seed, fold) run of one trainer it reads nnU-Net's ``fold_X/validation/summary.json`` and the harness's
``runs.jsonl`` (wall time), applies the convergence rule written before the runs (every foreground class's mean
Dice >= CLASS_MIN and the mean foreground Dice >= MEAN_MIN), and checks the three targets: converged runs, the
sample sd across seeds within each fold, and the wall time per training. Prints a table and writes JSON.

    python benchmarks/calibrate_protocol.py --results $nnUNet_results --trainer nnUNetTrainer_40epochs_25iters \
        --plans hyperaCPU2dF4Plans --configuration 2d --runs work_bench/cpu_v3_calib/runs.jsonl \
        --out docs/bench/cpu_v3_calibration.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

CLASS_MIN = 0.70
MEAN_MIN = 0.75
MIN_CONVERGED = 14
MAX_SD = 0.02
MAX_WALL_S = 480.0


def _runs_wall(paths: list[Path]) -> dict[tuple[int, int], float]:
    """(seed, fold) -> wall seconds of its training, summed over the commands of a resumed run."""
    out: dict[tuple[int, int], float] = {}
    for p in paths:
        for line in p.read_text().splitlines():
            r = json.loads(line)
            key = (int(r.get("HYPERA_SEED") or r.get("seed") or 0), int(r["fold"]))
            out[key] = out.get(key, 0.0) + float(r["wall_s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=Path, required=True, help="nnUNet_results of the benchmark")
    ap.add_argument("--dataset", default="Dataset004_Hippocampus")
    ap.add_argument("--trainer", required=True)
    ap.add_argument("--plans", required=True)
    ap.add_argument("--configuration", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--runs", type=Path, nargs="+", default=[], help="the harness's runs.jsonl file(s)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    wall = _runs_wall(args.runs)
    rows = []
    for seed in args.seeds:
        for fold in args.folds:
            folder = (args.results / "hypera_seeded" / f"seed{seed}" / args.dataset
                      / f"{args.trainer}__{args.plans}__{args.configuration}" / f"fold_{fold}")
            summary = folder / "validation" / "summary.json"
            if not summary.is_file():
                rows.append({"seed": seed, "fold": fold, "finished": False})
                continue
            s = json.loads(summary.read_text())
            per_class = {k: float(v["Dice"]) for k, v in s["mean"].items()}
            mean_fg = float(s["foreground_mean"]["Dice"])
            rows.append({"seed": seed, "fold": fold, "finished": True, "mean_fg_dice": mean_fg,
                         "class_dice": per_class, "wall_s": wall.get((seed, fold)),
                         "converged": mean_fg >= MEAN_MIN and all(v >= CLASS_MIN for v in per_class.values())})
    done = [r for r in rows if r["finished"]]
    sds = {}
    for fold in args.folds:
        vals = [r["mean_fg_dice"] for r in done if r["fold"] == fold]
        sds[fold] = statistics.stdev(vals) if len(vals) >= 2 else None
    walls = [r["wall_s"] for r in done if r["wall_s"] is not None]
    n_conv = sum(r["converged"] for r in done)
    targets = {
        "converged": {"value": n_conv, "of": len(done), "target": f">= {MIN_CONVERGED} of 15",
                      "met": len(done) == 15 and n_conv >= MIN_CONVERGED},
        "within_fold_sd": {"value": {str(k): v for k, v in sds.items()}, "target": f"<= {MAX_SD} in every fold",
                           "met": all(v is not None and v <= MAX_SD for v in sds.values())},
        "wall_s": {"max": max(walls, default=None), "mean": statistics.mean(walls) if walls else None,
                   "target": f"<= {MAX_WALL_S:.0f} s per training", "met": bool(walls) and max(walls) <= MAX_WALL_S},
    }
    out = {"trainer": args.trainer, "plans": args.plans, "configuration": args.configuration,
           "rule": {"class_min": CLASS_MIN, "mean_min": MEAN_MIN}, "runs": rows, "targets": targets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"{'seed':>4} {'fold':>4} {'mean fg':>8} {'classes':>15} {'wall s':>7} converged")
    for r in rows:
        if not r["finished"]:
            print(f"{r['seed']:>4} {r['fold']:>4}  (not finished)")
            continue
        cls = " ".join(f"{v:.3f}" for v in r["class_dice"].values())
        w = "" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        print(f"{r['seed']:>4} {r['fold']:>4} {r['mean_fg_dice']:>8.4f} {cls:>15} {w:>7} {r['converged']}")
    for k, t in targets.items():
        print(f"{k}: {json.dumps({x: y for x, y in t.items() if x != 'met'})} -> {'met' if t['met'] else 'NOT met'}")


if __name__ == "__main__":
    main()
