"""`hypera-nnunet benchmark` end to end with the real nnU-Net CLI on real Hippocampus data.

10 MSD cases are converted into pytest's temporary folder (nothing is copied into the repository) and
planned; the benchmark then writes its reduced plans, trains nnUNetTrainer and HyperaTrainer on folds 0
and 1 at 1 epoch x 5 iterations, collects nnU-Net's validation summaries and writes the report. A second
call must skip every finished training.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HIPPOCAMPUS = Path(os.environ.get("HYPERA_HIPPOCAMPUS", "/work/shared/data/Task04_Hippocampus"))
DATASET_ID = 952
TRAINERS = ("nnUNetTrainer_1epochs_5iters", "HyperaTrainer_1epochs_5iters")

pytestmark = [
    pytest.mark.nnunet,
    pytest.mark.skipif(not (HIPPOCAMPUS / "dataset.json").is_file(), reason=f"no Hippocampus data at {HIPPOCAMPUS}"),
]


def bench(args, env):
    return subprocess.run([sys.executable, "-m", "hypera_nnunet.cli", "benchmark", *args], env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from hypera_nnunet.data import convert_msd_subset, run_nnunet
    from hypera_nnunet.env import nnunet_env

    root = tmp_path_factory.mktemp("bench_nnunet")
    folders = {v: root / v for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for f in folders.values():
        f.mkdir()
    base = {k: str(v) for k, v in folders.items()}
    base.update(nnUNet_def_n_proc="1", nnUNet_compile="0", OMP_NUM_THREADS="2")
    env = nnunet_env({**base, "nnUNet_n_proc_DA": "1"})
    convert_msd_subset(HIPPOCAMPUS, 10, DATASET_ID, env=env, include_test=False)
    run_nnunet(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
               env=env, log=root / "nnunet.log")
    out = root / "bench"
    args = ["-d", str(DATASET_ID), "-c", "3d_fullres", "--protocol", "cpu-v2", "--epochs", "1", "--iters", "5",
            "-tr", "nnUNetTrainer", "HyperaTrainer", "-f", "0", "1", "--bootstrap", "200", "--out", str(out)]
    first = bench(args, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return {"env": env, "out": out, "args": args, "first": first, "results": folders["nnUNet_results"]}


def test_benchmark_trains_collects_and_reports_real_nnunet_folds(run):
    out = run["out"]
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["trainer"], r["fold"]) for r in runs) == sorted((t, k) for t in TRAINERS for k in (0, 1))
    assert all(r["returncode"] == 0 and r["done"] for r in runs)
    # progress was shown while it ran
    assert "[0/4] start nnUNetTrainer_1epochs_5iters fold 0" in run["first"].stdout
    res = json.loads((out / "results.json").read_text())
    assert res["protocol"]["epochs"] == 1 and res["protocol"]["iters"] == 5 and res["plans"] == "hyperaCPUPlans"
    base, hyp = TRAINERS
    for t in TRAINERS:
        pt = res["per_trainer"][t]
        assert sorted(pt["folds_finished"]) == ["seed0_fold0", "seed0_fold1"]
        # per-class Dice from nnU-Net's own summary.json of each fold
        for k in (0, 1):
            folder = next(run["results"].glob(f"Dataset{DATASET_ID}_*/{t}__hyperaCPUPlans__3d_fullres"))
            summary = json.loads((folder / f"fold_{k}" / "validation" / "summary.json").read_text())
            for lab in ("1", "2"):
                mine = pt["per_fold_dice"][f"seed0_fold{k}"][lab]
                assert mine == pytest.approx(summary["mean"][lab]["Dice"], nan_ok=True)
        assert set(pt["dice"]) == {"1", "2"} and pt["dice"]["1"]["n"] == 2
    # paired against the baseline, per validation case of both folds (2 + 2 cases)
    pr = res["paired"][hyp]
    assert pr["n_cases"] == 4 and sorted(pr["matched_runs"]) == ["seed0_fold0", "seed0_fold1"]
    assert set(pr["dice"]) == {"1", "2"} and "hd95" in pr and "nsd" in pr
    # the agents' hooks were timed in HyperaTrainer's decision log
    assert res["per_trainer"][hyp]["overhead"]["all"]["overhead_s"] > 0
    assert res["per_trainer"][base]["overhead"]["all"] is None
    report = (out / "report.md").read_text()
    assert base in report and hyp in report and "Wilcoxon" in report
    assert list(out.glob("*.png"))


def test_benchmark_resumes_by_skipping_finished_folds(run):
    again = bench(run["args"], run["env"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("[skip]") == 4 and " start " not in again.stdout
