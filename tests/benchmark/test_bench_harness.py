"""The benchmark harness on fake nnU-Net folders: resume states, the runner, collection and the report."""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from hypera_nnunet.benchmark import cli as bench_cli
from hypera_nnunet.benchmark.collect import overhead, read_decisions, read_fold, read_summary, trajectories
from hypera_nnunet.benchmark.protocol import get_protocol
from hypera_nnunet.benchmark.runner import Job, run_jobs
from hypera_nnunet.errors import HyperaError

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


def _fold(root: Path, trainer: str, fold: int, dices: list[tuple[float, float]], shift: int, hypera: bool,
          epoch_s: float = 10.0, results: Path | None = None) -> Path:
    """A finished fold: summary.json with the given per-case Dice, predictions, a checkpoint, decisions."""
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
                            "mean_fg_dice": [0.2, 0.5, 0.7], "ema_fg_dice": [0.2, 0.3, 0.4], "lrs": [0.01] * n,
                            "epoch_start_timestamps": starts, "epoch_end_timestamps": [s + epoch_s for s in starts]}},
               out / "checkpoint_final.pth")
    if hypera:
        (out / "hypera").mkdir()
        lines = [{"epoch": e, "multipliers": {"lr": 1.0 + 0.1 * e, "aug_prob": 1.0}, "applied": e > 0,
                  "rollback": e == 2, "phase": "learn", "rewards": {"learning_rate": 0.1 * e},
                  "overhead_s": {"learning_rate": 0.01, "coordinator": 0.01, "total": 0.02}} for e in range(n)]
        lines.append(dict(lines[1], multipliers={"lr": 9.0, "aug_prob": 1.0}))  # a resumed run repeats epoch 1
        (out / "hypera" / "decisions.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return out


@pytest.fixture
def fake_nnunet(tmp_path, monkeypatch):
    pre = tmp_path / "nnUNet_preprocessed" / DS
    pre.mkdir(parents=True)
    (pre / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                                                  "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    (pre / f"{PLANS}.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}, "image_reader_writer":
                                                   "SimpleITKIO", "label_manager": "LabelManager"}))
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / v).mkdir(exist_ok=True)
        monkeypatch.setenv(v, str(tmp_path / v))
    base = [[(0.80, 0.70), (0.82, 0.71), (0.78, 0.69)], [(0.81, 0.72), (0.79, 0.70), (0.80, 0.71)]]
    for f in (0, 1):
        _fold(tmp_path, BASE, f, base[f], shift=1, hypera=False)
        _fold(tmp_path, HYP, f, [(a + 0.02, b - 0.01) for a, b in base[f]], shift=0, hypera=True)
    return tmp_path


def test_read_summary_and_errors(fake_nnunet, tmp_path):
    folder = fake_nnunet / "nnUNet_results" / DS / f"{BASE}__{PLANS}__3d_fullres" / "fold_0"
    cases, mean = read_summary(folder / "validation" / "summary.json")
    assert [c.case for c in cases] == ["case_0_0", "case_0_1", "case_0_2"]
    assert cases[1].dice == {"1": 0.82, "2": 0.71}
    assert mean["1"] == pytest.approx(0.8)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HyperaError, match="bad.json"):
        read_summary(bad)
    bad.write_text("{}")
    with pytest.raises(HyperaError, match="metric_per_case"):
        read_summary(bad)
    with pytest.raises(HyperaError, match="not finished"):
        read_summary(tmp_path / "missing.json")


def test_decisions_overhead_and_trajectories(fake_nnunet):
    folder = fake_nnunet / "nnUNet_results" / DS / f"{HYP}__{PLANS}__3d_fullres" / "fold_0"
    recs = read_decisions(folder)
    assert [r["epoch"] for r in recs] == [0, 1, 2]
    assert recs[1]["multipliers"]["lr"] == 9.0  # the later line for a repeated epoch wins
    f = read_fold(folder, HYP, 0)
    assert f.epoch_s == (10.0, 10.0, 10.0)
    ov = overhead(f)
    assert ov["share"] == pytest.approx(0.002)  # 3 x 0.02 s over 3 x 10 s
    assert ov["by_part_s"]["learning_rate"] == pytest.approx(0.03)
    assert trajectories(f)["lr"] == [1.0, 9.0, 1.2]
    base = read_fold(fake_nnunet / "nnUNet_results" / DS / f"{BASE}__{PLANS}__3d_fullres" / "fold_0", BASE, 0)
    assert overhead(base) is None


def test_job_states_and_resume_command(tmp_path):
    job = Job(DS, "3d_fullres", 3, BASE, PLANS, 0, tmp_path)
    assert job.state() == "new"
    assert "--c" not in job.command("cpu", npz=True) and "--npz" in job.command("cpu", npz=True)
    job.output_folder.mkdir(parents=True)
    (job.output_folder / "checkpoint_latest.pth").write_bytes(b"x")
    assert job.state() == "resume"
    assert job.command("cpu", npz=False)[-1] == "--c"
    (job.output_folder / "validation").mkdir()
    (job.output_folder / "validation" / "summary.json").write_text("{}")
    assert job.state() == "done"


FAKE_TRAIN = """#!{python}
import json, sys, pathlib, os
a = sys.argv[1:]
out = pathlib.Path(os.environ["nnUNet_results"]) / a[0] / f"{{a[4]}}__{{a[6]}}__{{a[1]}}" / f"fold_{{a[2]}}"
out.mkdir(parents=True, exist_ok=True)
with open(out.parent / "calls.txt", "a") as f:
    f.write(" ".join(a) + "\\n")
if os.environ.get("FAKE_FAIL") == a[2]:
    (out / "checkpoint_latest.pth").write_text("x")
    sys.exit(3)
(out / "validation").mkdir(exist_ok=True)
(out / "validation" / "summary.json").write_text("{{}}")
"""


def test_runner_skips_done_resumes_and_records_failures(tmp_path, monkeypatch):
    exe_dir = tmp_path / "bin"
    exe_dir.mkdir()
    exe = exe_dir / "nnUNetv2_train"
    exe.write_text(FAKE_TRAIN.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    results = tmp_path / "results"
    jobs = [Job(DS, "3d_fullres", f, BASE, PLANS, 0, results) for f in (0, 1, 2)]
    jobs[0].output_folder.joinpath("validation").mkdir(parents=True)
    jobs[0].output_folder.joinpath("validation", "summary.json").write_text("{}")

    def env_for(job):
        return {**os.environ, "nnUNet_results": str(job.results_root), "FAKE_FAIL": "2"}

    out = tmp_path / "bench"
    recs = run_jobs(jobs, "cpu", env_for, out, npz=True, poll_s=0.05, exe_dir=exe_dir, stream=open(os.devnull, "w"))
    assert recs[0]["skipped"]
    by_fold = {r["fold"]: r for r in recs if "fold" in r}
    assert by_fold[1]["returncode"] == 0 and by_fold[1]["done"]
    assert by_fold[2]["returncode"] == 3 and not by_fold[2]["done"]
    assert len((out / "runs.jsonl").read_text().splitlines()) == 2
    # the failed fold left a checkpoint: the next call continues it with --c
    assert jobs[2].state() == "resume"
    run_jobs(jobs, "cpu", lambda j: {**os.environ, "nnUNet_results": str(j.results_root)}, out, poll_s=0.05,
             exe_dir=exe_dir, stream=open(os.devnull, "w"))
    calls = (jobs[0].output_folder.parent / "calls.txt").read_text().splitlines()
    assert len(calls) == 3  # fold 1 once, fold 2 twice; fold 0 never
    assert calls[-1].split()[2] == "2" and calls[-1].endswith("--c")
    assert jobs[2].state() == "done"


def test_report_only_on_finished_and_missing_folds(fake_nnunet, capsys):
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "1", "2", "--out", str(out), "--report-only",
                         "--bootstrap", "500"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["labels"] == {"1": "Anterior", "2": "Posterior"}
    assert set(res["missing_runs"]) == {f"{BASE} fold 2", f"{HYP} fold 2"}
    base, hyp = res["per_trainer"][BASE], res["per_trainer"][HYP]
    assert base["dice"]["1"]["n"] == 2
    assert base["dice"]["1"]["mean"] == pytest.approx(0.80)
    assert hyp["dice"]["1"]["mean"] == pytest.approx(0.82)
    pr = res["paired"][HYP]
    assert pr["n_cases"] == 6
    assert pr["dice"]["1"]["mean_diff"] == pytest.approx(0.02)
    assert pr["dice"]["2"]["mean_diff"] == pytest.approx(-0.01)
    assert pr["dice"]["1"]["wins"] == 6 and pr["dice"]["2"]["losses"] == 6
    # the fake HYPERA predictions equal the reference, the baseline's are shifted by 1 voxel
    assert hyp["hd95"]["1"]["mean"] == 0.0 and base["hd95"]["1"]["mean"] == pytest.approx(1.0)
    assert pr["nsd"]["1"]["mean_diff"] >= 0
    rl = pr["run_level_fg_dice"]  # one value per run: fold mean of (Dice1 + Dice2) / 2 moves by (0.02 - 0.01) / 2
    assert rl["n"] == 2 and rl["mean_diff"] == pytest.approx(0.005) and rl["wins"] == 2
    assert hyp["overhead"]["all"]["share"] == pytest.approx(0.002)
    assert hyp["overhead"]["all"]["ms_per_epoch_by_part"] == pytest.approx({"learning_rate": 10.0, "coordinator": 10.0})
    assert base["overhead"]["all"] is None
    assert res["trajectories"][HYP]["seed0_fold0"]["lr"][1] == 9.0
    md = (out / "report.md").read_text()
    assert "Not finished" in md and "Wilcoxon" in md and "**Run level**" in md and "learning_rate 10.0" in md
    assert md.index("**Run level**") < md.index("Case level, within runs")
    assert "| `HyperaTrainer_20epochs_25iters` | 2 |" in md
    for png in ("learning_curves.png", f"trajectories_{HYP}.png"):
        assert (out / png).stat().st_size > 1000
    assert not list(out.rglob("*.tmp"))


def test_cli_errors_name_the_problem(fake_nnunet, capsys, monkeypatch):
    out = fake_nnunet / "bench"
    assert bench_cli.main(["-d", "42", "--out", str(out), "--report-only"]) == 2
    assert "nnUNet_preprocessed" in capsys.readouterr().err
    assert bench_cli.main(["-d", "999", "-tr", "nnUNetTrainer_5epochs", "--out", str(out), "--dry-run"]) == 2
    assert "already names a budget" in capsys.readouterr().err
    assert bench_cli.main(["-d", "999", "-tr", "NoSuchTrainer", "--out", str(out), "--dry-run"]) == 2
    assert "unknown trainer 'NoSuchTrainer_50epochs_25iters'" in capsys.readouterr().err
    assert bench_cli.main(["-d", "999", "--epochs", "7", "--out", str(out), "--dry-run"]) == 2
    assert "--epochs 7" in capsys.readouterr().err
    monkeypatch.delenv("nnUNet_results")
    assert bench_cli.main(["-d", "999", "--out", str(out), "--dry-run"]) == 2
    assert "nnUNet_results" in capsys.readouterr().err


def test_dry_run_lists_fold_major_commands(fake_nnunet, capsys):
    rc = bench_cli.main(["-d", "999", "-f", "2", "3", "-tr", "nnUNetTrainer", "HyperaTrainer_Shadow", "--npz",
                         "--out", str(fake_nnunet / "bench"), "--dry-run"])
    assert rc == 0
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[dry-run]")]
    assert [ln.split()[4] for ln in lines] == ["2", "2", "3", "3"]
    assert "HyperaTrainer_Shadow_50epochs_25iters" in lines[1] and lines[0].endswith("--npz")


def test_protocols_are_fixed():
    cpu = get_protocol("cpu")
    assert (cpu.plans, cpu.epochs, cpu.iters, cpu.concurrency) == ("hyperaCPUPlans", 20, 25, 1)
    assert cpu.trainer_name("nnUNetTrainer") == "nnUNetTrainer_20epochs_25iters"
    v2 = get_protocol("cpu-v2")  # the default: same plans, 1250 steps
    assert (v2.plans, v2.epochs, v2.iters, v2.concurrency) == ("hyperaCPUPlans", 50, 25, 1)
    assert v2.trainer_name("HyperaTrainer") == "HyperaTrainer_50epochs_25iters"
    assert get_protocol("gpu").plans == "nnUNetPlans"
    assert get_protocol("gpu-full").trainer_name("HyperaTrainer") == "HyperaTrainer"
    with pytest.raises(HyperaError, match="unknown protocol"):
        get_protocol("tpu")
    assert math.isfinite(cpu.to_dict()["val_iters"])


@pytest.mark.nnunet  # runs nnU-Net's nnUNetv2_evaluate_folder (about 10 s on an idle machine)
def test_refinement_variant_is_scored_and_paired(fake_nnunet, capsys):
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "--out", str(out),
                         "--bootstrap", "200",
                         "--no-surface", "--refine", "copy=cp {input}/*.nii.gz {output}/"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert f"{BASE}+copy" in res["trainers"]
    pr = res["paired"][f"{BASE}+copy"]
    assert pr["n_cases"] == 3
    # nnU-Net re-scored the copied masks: shifted by 1 of 5 voxels, so Dice 0.8 for both labels (the fake summary
    # of the unrefined fold says 0.70 for label 2, so a difference of +0.10 shows the copy was really scored)
    assert res["per_trainer"][f"{BASE}+copy"]["dice"]["2"]["mean"] == pytest.approx(0.8)
    assert pr["dice"]["2"]["mean_diff"] == pytest.approx(0.1)
    assert (out / "refined" / "copy" / BASE / "seed0_fold0" / "validation" / "summary.json").is_file()
    assert bench_cli.main(["-d", "999", "-f", "0", "--out", str(out), "--report-only", "--refine", "noequals"]) == 2
    assert "NAME=COMMAND" in capsys.readouterr().err


def test_config_variants_share_one_report(fake_nnunet, capsys, monkeypatch):
    """TRAINER:CONFIG runs a HYPERA trainer with a config file, under its own results folder and name."""
    cfg = fake_nnunet / "gs4.json"
    cfg.write_text(json.dumps({"learning": {"gradient_steps": 4}, "seed": 5}))
    captured = {}

    def fake_run_jobs(jobs, device, env_for, out, **kw):
        captured["env"] = {(j.name, j.fold, j.seed): env_for(j) for j in jobs}
        captured["folders"] = {(j.name, j.seed): j.output_folder for j in jobs}
        return []

    monkeypatch.setattr(bench_cli, "run_jobs", fake_run_jobs)
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         f"HyperaTrainer:{cfg}", "--seeds", "0", "2", "--out", str(out), "--no-surface",
                         "--bootstrap", "200"])
    assert rc == 0, capsys.readouterr().err
    var, results = f"{HYP}[gs4]", fake_nnunet / "nnUNet_results"
    env = captured["env"]
    assert "HYPERA_CONFIG" not in env[(BASE, 0, 0)] and "HYPERA_CONFIG" not in env[(HYP, 0, 0)]
    assert env[(var, 0, 0)]["HYPERA_CONFIG"] == str(cfg.resolve())  # seed 0: the file as given (its own seed 5)
    seeded = json.loads(Path(env[(var, 0, 2)]["HYPERA_CONFIG"]).read_text())
    assert seeded["seed"] == 2 and seeded["learning"]["gradient_steps"] == 4
    assert json.loads(Path(env[(HYP, 0, 2)]["HYPERA_CONFIG"]).read_text())["learning"]["gradient_steps"] == 8
    assert env[(var, 0, 0)]["nnUNet_results"] == str(results / "hypera_variants" / "gs4")
    assert env[(var, 0, 2)]["nnUNet_results"] == str(results / "hypera_variants" / "gs4" / "hypera_seeds" / "seed2")
    assert captured["folders"][(var, 0)] == results / "hypera_variants" / "gs4" / DS / f"{HYP}__{PLANS}__3d_fullres" \
        / "fold_0"
    # a finished variant fold is reported under its own name and paired against the baseline
    _fold(fake_nnunet, HYP, 0, [(0.9, 0.8)] * 3, shift=0, hypera=True, results=results / "hypera_variants" / "gs4")
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         f"HyperaTrainer:{cfg}", "--out", str(out), "--report-only", "--no-surface",
                         "--bootstrap", "200"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["trainers"] == [BASE, HYP, var]
    assert res["per_trainer"][var]["dice"]["1"]["mean"] == pytest.approx(0.9)
    assert res["per_trainer"][HYP]["dice"]["1"]["mean"] == pytest.approx(0.82)
    assert res["paired"][var]["dice"]["1"]["mean_diff"] == pytest.approx(0.1)
    assert f"`{var}`" in (out / "report.md").read_text()


def test_config_variant_errors_name_the_problem(fake_nnunet, capsys):
    out = str(fake_nnunet / "bench")
    missing = fake_nnunet / "nope.json"
    assert bench_cli.main(["-d", "999", "-tr", f"HyperaTrainer:{missing}", "--out", out, "--dry-run"]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err
    bad = fake_nnunet / "bad.json"
    bad.write_text(json.dumps({"learning": {"gradient_stepz": 4}}))
    assert bench_cli.main(["-d", "999", "-tr", f"HyperaTrainer:{bad}", "--out", out, "--dry-run"]) == 2
    assert "bad.json" in capsys.readouterr().err
    good = fake_nnunet / "good.json"
    good.write_text("{}")
    assert bench_cli.main(["-d", "999", "-tr", f"nnUNetTrainer:{good}", "--out", out, "--dry-run"]) == 2
    assert "only HYPERA trainers" in capsys.readouterr().err
    (fake_nnunet / "other").mkdir()
    (fake_nnunet / "other" / "good.json").write_text("{}")
    assert bench_cli.main(["-d", "999", "-tr", f"HyperaTrainer:{good}", f"HyperaTrainer:{fake_nnunet}/other/good.json",
                           "--out", out, "--dry-run"]) == 2
    assert "two runs one name" in capsys.readouterr().err
    assert bench_cli.main(["-d", "999", "-tr", "HyperaTrainer", "HyperaTrainer", "--out", out, "--dry-run"]) == 2
    assert "a trainer listed twice" in capsys.readouterr().err
    odd = fake_nnunet / "a b.json"
    odd.write_text("{}")
    assert bench_cli.main(["-d", "999", "-tr", f"HyperaTrainer:{odd}", "--out", out, "--dry-run"]) == 2
    assert "letters, digits" in capsys.readouterr().err


def test_register_adds_the_benchmark_subcommand(fake_nnunet, capsys):
    import argparse

    parser = argparse.ArgumentParser(prog="hypera-nnunet")
    sub = parser.add_subparsers(dest="command")
    bench_cli.register(sub)
    args = parser.parse_args(["benchmark", "-d", "999", "-f", "3", "--out", str(fake_nnunet / "b"), "--dry-run"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "[dry-run] nnUNetv2_train Dataset999_Fake 3d_fullres 3 -tr nnUNetTrainer_50epochs_25iters" in out
