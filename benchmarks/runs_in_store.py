"""Agents across runs (issue 14): each HYPERA run's advantage over its seeded baseline, against the number of runs
in the experience store it started from (the runs-in-store curve), and the held-out comparison per arm.

Every run is a line of a benchmark harness's ``runs.jsonl`` (``--runs``, several allowed). An arm is
``NAME=TRAINER`` or ``NAME=TRAINER:STORE``: the runs whose trainer (with its ``[variant]`` if any) is ``TRAINER``;
with ``STORE``, the runs-in-store of a run is the number of runs in ``STORE/runs`` whose id (its UTC start) is
earlier than the run's start (the runs the policies it warm-started from had seen; a frozen arm's store does not
grow), else 0 (agents that learn within their run only). The advantage is the run's final validation mean
foreground Dice (``fold_X/validation/summary.json``) minus that of the seeded baseline (``--baseline``) of the same
fold and seed. Paired statistics per arm: :func:`hypera_nnunet.benchmark.stats.paired_test`.

    python benchmarks/runs_in_store.py --runs bench/cpu_v3_calib/runs.jsonl bench/cpu_v3_compare/runs.jsonl \
        bench/s8_heldout/runs.jsonl --baseline nnUNetTrainer_50epochs_25iters \
        --arm within=HyperaTrainer_50epochs_25iters warm=HyperaTrainer_50epochs_25iters[warm]:/work/nn/store_warm \
        --folds 3 4 --out docs/bench/cpu_v3_runs_in_store.json
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from hypera_nnunet.benchmark.stats import paired_test


def label(run: dict) -> str:
    return run["trainer"] + (f"[{run['variant']}]" if run.get("variant") else "")


def final_dice(folder: str) -> float | None:
    p = Path(folder) / "validation" / "summary.json"
    if not p.is_file():
        return None
    return float(json.loads(p.read_text())["foreground_mean"]["Dice"])


def store_runs_before(store: Path, start_utc: str) -> int:
    start = datetime.strptime(start_utc, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    n = 0
    for d in (store / "runs").iterdir():
        t = datetime.strptime(d.name.split("-")[0], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        n += t < start
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs="+", type=Path, required=True)
    ap.add_argument("--baseline", required=True, help="the baseline trainer's label in runs.jsonl")
    ap.add_argument("--arm", nargs="+", required=True, metavar="NAME=TRAINER[:STORE]")
    ap.add_argument("--folds", nargs="+", type=int, help="only these folds (default: all)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)

    runs = [json.loads(line) for f in args.runs for line in f.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r.get("done") and r.get("returncode") == 0 and r.get("seed") is not None]
    base = {(r["fold"], int(r["seed"])): final_dice(r["output_folder"]) for r in runs if label(r) == args.baseline}
    rows, arms = [], {}
    for spec in args.arm:
        name, _, rest = spec.partition("=")
        trainer, _, store = rest.partition(":")
        arms[name] = {"trainer": trainer, "store": store or None}
        seen = set()
        for r in runs:
            if label(r) != trainer or (args.folds and r["fold"] not in args.folds):
                continue
            key = (r["fold"], int(r["seed"]))
            if key in seen or base.get(key) is None:
                continue
            seen.add(key)
            d = final_dice(r["output_folder"])
            n = store_runs_before(Path(store), r["start_utc"]) if store else 0
            rows.append({"arm": name, "fold": key[0], "seed": key[1], "start_utc": r["start_utc"],
                         "runs_in_store": n, "dice": d, "baseline_dice": base[key], "advantage": d - base[key]})
    summary = {}
    for name in arms:
        mine = [x for x in rows if x["arm"] == name]
        if not mine:
            continue
        t = paired_test([x["baseline_dice"] for x in mine], [x["dice"] for x in mine])
        summary[name] = {"n": len(mine), **arms[name], "paired": t.to_dict(),
                         "runs_in_store": sorted({x["runs_in_store"] for x in mine})}
    xs = [x["runs_in_store"] for x in rows]
    ys = [x["advantage"] for x in rows]
    curve = {}
    if len(set(xs)) > 1:
        rho, p = spearmanr(xs, ys)
        slope = float(np.polyfit(xs, ys, 1)[0])
        curve = {"spearman_rho": float(rho), "spearman_p": float(p), "ols_slope_per_run": slope,
                 "by_runs_in_store": {str(k): float(np.mean([y for x, y in zip(xs, ys) if x == k]))
                                      for k in sorted(set(xs))}}
    out = {"description": __doc__.split("\n\n")[0], "command": " ".join(sys.argv), "baseline": args.baseline,
           "folds": args.folds, "rows": rows, "arms": summary, "curve": curve}
    args.out.write_text(json.dumps(out, indent=1))
    print("| arm | fold | seed | runs in store | Dice | baseline | advantage |\n|---|---|---|---|---|---|---|")
    for x in sorted(rows, key=lambda x: (x["arm"], x["start_utc"])):
        print(f"| {x['arm']} | {x['fold']} | {x['seed']} | {x['runs_in_store']} | {x['dice']:.4f} | "
              f"{x['baseline_dice']:.4f} | {x['advantage']:+.4f} |")
    for name, s in summary.items():
        p = s["paired"]
        print(f"{name}: n {s['n']}, mean {p['mean_diff']:+.4f} [{p['ci_low']:+.4f}, {p['ci_high']:+.4f}]")
    if curve:
        print(f"curve: rho {curve['spearman_rho']:+.2f} (p {curve['spearman_p']:.2f}), "
              f"slope {curve['ols_slope_per_run']:+.4f}/run, means {curve['by_runs_in_store']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
