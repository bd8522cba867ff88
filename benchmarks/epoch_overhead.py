"""Time per epoch of HyperaTrainer against nnUNetTrainer at the same settings, and the agents' share.

Runs nnU-Net's CLI on a Hippocampus subset (MSD Task04, converted with nnUNetv2_convert_MSD_dataset)
with the reduced CPU plans, alternating the trainers so that machine load affects both alike:

    python benchmarks/epoch_overhead.py --cases 24 --epochs 5 --iters 10 --repeats 1 --out docs/overhead.json

Epoch times come from nnU-Net's own logger (epoch_end - epoch_start timestamps in checkpoint_final.pth);
the agents' time from ``overhead_s`` in ``fold_0/hypera/decisions.jsonl`` (each hook timed with
perf_counter, dataloader restarts included and also reported on their own).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.data import CPU_ENV, convert_msd_subset, run_nnunet
from hypera_nnunet.env import nnunet_env
from hypera_nnunet.nnunet.plans import write_reduced_plans

MSD = Path(__file__).resolve().parents[2] / "shared" / "data" / "Task04_Hippocampus"


def epoch_times(fold: Path) -> list[float]:
    log = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]
    return [e - s for s, e in zip(log["epoch_start_timestamps"], log["epoch_end_timestamps"])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=24)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--trainers", nargs="+", default=["nnUNetTrainer", "HyperaTrainer", "HyperaTrainer_Shadow"])
    ap.add_argument("--out", default="docs/overhead.json")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="hypera_overhead_"))
    env = nnunet_env({"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "pre"),
                      "nnUNet_results": str(root / "res"), **CPU_ENV})
    env.pop("HYPERA_CONFIG", None)
    name = convert_msd_subset(MSD, args.cases, 905, env=env, include_test=False)
    run_nnunet(["nnUNetv2_plan_and_preprocess", "-d", "905", "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
               env={**env, "nnUNet_n_proc_DA": "1"})
    write_reduced_plans(root / "pre" / name)
    budget = f"_{args.epochs}epochs_{args.iters}iters"
    runs = []
    for rep in range(args.repeats):
        for base in args.trainers:
            tr = base + budget
            if rep:
                tr_dir = root / "res" / name / f"{tr}__hyperaCPUPlans__3d_fullres"
                if tr_dir.exists():
                    os.rename(tr_dir, f"{tr_dir}_rep{rep - 1}")
            t0 = time.perf_counter()
            load0 = os.getloadavg()[0]
            run_nnunet(["nnUNetv2_train", "905", "3d_fullres", "0", "-tr", tr, "-p", "hyperaCPUPlans", "-device",
                        "cpu"], env=env)
            fold = root / "res" / name / f"{tr}__hyperaCPUPlans__3d_fullres" / "fold_0"
            times = epoch_times(fold)
            rec = {"trainer": tr, "repeat": rep, "epoch_times_s": times, "wall_s": time.perf_counter() - t0,
                   "loadavg_1min_start": load0, "loadavg_1min_end": os.getloadavg()[0]}
            dec = fold / "hypera" / "decisions.jsonl"
            if dec.is_file():
                lines = [json.loads(x) for x in dec.read_text().splitlines() if x.strip()]
                rec["agents_s"] = [x["overhead_s"]["total"] for x in lines]
                rec["rebuild_s"] = [x["overhead_s"].get("dataloader_rebuild", 0.0) for x in lines]
                rec["per_agent_s"] = {k: float(np.sum([x["overhead_s"].get(k, 0.0) for x in lines]))
                                      for k in lines[0]["overhead_s"]}
                rec["agents_share"] = float(np.sum(rec["agents_s"]) / np.sum(times))
            runs.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "per_agent_s"}), flush=True)
    result = {"command": "python benchmarks/epoch_overhead.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__},
        "dataset": f"{name} ({args.cases} MSD Task04 cases), hyperaCPUPlans 3d_fullres, fold 0", "runs": runs}
    atomic_write_json(args.out, result)


if __name__ == "__main__":
    main()
