"""`hypera-nnunet benchmark` end to end with the real nnU-Net CLI on real Hippocampus data.

On the session's 12-case MSD subset (``hippo`` in tests/conftest.py), into a results folder of its own: the
benchmark trains nnUNetTrainer and HyperaTrainer on folds 0 and 1 at 1 epoch x 5 iterations, collects nnU-Net's
validation summaries and writes the report. A second call must skip every finished training.
"""

import json
import subprocess
import sys

import pytest

from hypera_nnunet.nnunet.variant_table import ALL_AGENTS

TRAINERS = ("nnUNetTrainer_1epochs_5iters", "HyperaTrainer_1epochs_5iters")

pytestmark = pytest.mark.nnunet


def bench(args, env):
    return subprocess.run([sys.executable, "-m", "hypera_nnunet.cli", "benchmark", *args], env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def run(hippo, tmp_path_factory):
    base_env, name, data_root = hippo
    root = tmp_path_factory.mktemp("bench_nnunet")
    env = {**base_env, "nnUNet_results": str(root / "results")}
    out = root / "bench"
    args = ["-d", name, "-c", "3d_fullres", "--protocol", "cpu-v2", "--epochs", "1", "--iters", "5",
            "-tr", "nnUNetTrainer", "HyperaTrainer", "-f", "0", "1", "--bootstrap", "200", "--out", str(out)]
    first = bench(args, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    splits = json.loads((data_root / "pre" / name / "splits_final.json").read_text())
    # seeded by default (HYPERA_SEED=0): the runs live in hypera_seeded/seed0
    return {"env": env, "out": out, "args": args, "first": first,
            "results": root / "results" / "hypera_seeded" / "seed0" / name,
            "n_val": len(splits[0]["val"]) + len(splits[1]["val"])}


def report_lines(out):
    return (out / "report.md").read_text().splitlines()


def test_benchmark_trains_collects_and_reports_real_nnunet_folds(run):
    out = run["out"]
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert sorted((r["trainer"], r["fold"]) for r in runs) == sorted((t, k) for t in TRAINERS for k in (0, 1))
    assert all(r["returncode"] == 0 and r["done"] for r in runs)
    # progress was shown while it ran
    assert "[0/4] start nnUNetTrainer_1epochs_5iters fold 0" in run["first"].stdout
    res = json.loads((out / "results.json").read_text())
    meta = res["meta"]
    assert meta["protocol"]["epochs"] == 1 and meta["protocol"]["iters"] == 5 and meta["plans"] == "hyperaCPUPlans"
    base, hyp = TRAINERS
    for t in TRAINERS:
        pt = res["per_trainer"][t]
        assert sorted(pt["folds_finished"]) == ["seed0_fold0", "seed0_fold1"]
        # per-class Dice from nnU-Net's own summary.json of each fold
        for k in (0, 1):
            folder = run["results"] / f"{t}__hyperaCPUPlans__3d_fullres"
            summary = json.loads((folder / f"fold_{k}" / "validation" / "summary.json").read_text())
            for lab in ("1", "2"):
                mine = pt["per_fold_dice"][f"seed0_fold{k}"][lab]
                assert mine == pytest.approx(summary["mean"][lab]["Dice"], nan_ok=True)
        assert set(pt["dice"]) == {"1", "2"} and pt["dice"]["1"]["n"] == 2
    # paired against the baseline, per validation case of both folds (nnU-Net's split of the 12 cases)
    pr = res["paired"][hyp]
    assert pr["n_cases"] == run["n_val"] and sorted(pr["matched_runs"]) == ["seed0_fold0", "seed0_fold1"]
    assert set(pr["dice"]) == {"1", "2"} and "hd95" in pr and "nsd" in pr
    # the agents that really ran, from each fold's hypera/config.json (HyperaTrainer: all six); none for nnU-Net's
    assert res["per_trainer"][hyp]["agents"] == {f"seed0_fold{k}": list(ALL_AGENTS) for k in (0, 1)}
    assert res["per_trainer"][base]["agents"] == {"seed0_fold0": [], "seed0_fold1": []}
    assert f"- `{hyp}`: 6 agents: {', '.join(ALL_AGENTS)} (seed0_fold0, seed0_fold1)" in report_lines(out)
    # the agents' hooks were timed in HyperaTrainer's decision log
    assert res["per_trainer"][hyp]["overhead"]["all"]["overhead_s"] > 0
    assert res["per_trainer"][base]["overhead"]["all"] is None
    # both trainers were seeded, as their own files record it, and paired on it
    assert meta["seeding"]["seeded"] and meta["seeding"]["variable"] == "HYPERA_SEED"
    for t in TRAINERS:
        assert res["per_trainer"][t]["hypera_seed"] == {"seed0_fold0": 0, "seed0_fold1": 0}
    assert pr["run_seeds"] == {"seed0_fold0": 0, "seed0_fold1": 0} and pr["run_level_fg_dice"]["n"] == 2
    assert res["nsd_definition"].startswith("surfel-area NSD")
    assert all(r["HYPERA_SEED"] == "0" and r["cpu_s"] > 0 for r in runs)
    assert all(v > 0 for v in res["per_trainer"][base]["cpu_s"]["per_run"].values())
    report = (out / "report.md").read_text()
    assert base in report and hyp in report and "Wilcoxon" in report
    assert list(out.glob("*.png"))


def test_benchmark_resumes_by_skipping_finished_folds(run):
    again = bench(run["args"], run["env"])
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("[skip]") == 4 and " start " not in again.stdout
