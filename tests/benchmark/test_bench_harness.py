"""The benchmark harness on fake nnU-Net folders: resume states, the runner, collection and the report."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from bench_fakes import BASE, DS, HYP, PLANS, make_fold

from hypera_nnunet.benchmark import cli as bench_cli
from hypera_nnunet.benchmark.collect import overhead, read_decisions, read_fold, read_summary, trajectories
from hypera_nnunet.benchmark.protocol import get_protocol
from hypera_nnunet.benchmark.runner import Job, run_jobs
from hypera_nnunet.config import run_config
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.variant_table import ALL_AGENTS


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
    assert ov["epochs"] == 3 and ov["epoch_s"] == 30.0
    assert ov["overhead_s"] == pytest.approx(0.06)  # 3 epochs x 0.02 s
    assert ov["share"] == pytest.approx(0.002)  # 0.06 s over 3 x 10 s
    assert ov["max_epoch_share"] == pytest.approx(0.002)
    # by part: one line per epoch (the repeated epoch 1 counts once): 3 x 0.01 s
    assert ov["by_part_s"] == pytest.approx({"learning_rate": 0.03, "coordinator": 0.03})
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
                         "--bootstrap", "500", "--unseeded"])  # the fake folds are unseeded runs, in that layout
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["labels"] == {"1": "Anterior", "2": "Posterior"}
    assert set(res["missing_runs"]) == {f"{BASE} fold 2", f"{HYP} fold 2"}
    base, hyp = res["per_trainer"][BASE], res["per_trainer"][HYP]
    assert base["dice"]["1"]["n"] == 2
    assert base["dice"]["1"]["mean"] == pytest.approx(0.80)
    assert hyp["dice"]["1"]["mean"] == pytest.approx(0.82)
    assert base["dice"]["2"]["mean"] == pytest.approx(0.705) and hyp["dice"]["2"]["mean"] == pytest.approx(0.695)
    assert base["dice"]["1"]["sd"] == pytest.approx(0.0) and base["dice"]["2"]["sd"] == pytest.approx(0.01 / 2 ** 0.5)
    assert base["fg_dice"]["mean"] == pytest.approx(0.7525) and hyp["fg_dice"]["mean"] == pytest.approx(0.7575)
    pr = res["paired"][HYP]
    assert pr["n_cases"] == 6
    d1 = pr["dice"]["1"]  # six cases, each +0.02: the bootstrap can only draw +0.02; all six positive
    assert d1["mean_diff"] == pytest.approx(0.02) and d1["median_diff"] == pytest.approx(0.02)
    assert (d1["ci_low"], d1["ci_high"]) == pytest.approx((0.02, 0.02))
    assert d1["wilcoxon_p"] == pytest.approx(2 / 2 ** 6)  # exact two-sided: the most extreme of 2^6 sign patterns
    assert pr["dice"]["2"]["mean_diff"] == pytest.approx(-0.01)
    assert d1["wins"] == 6 and pr["dice"]["2"]["losses"] == 6
    # the fake HYPERA predictions equal the reference, the baseline's are shifted by 1 voxel: HD95 1 mm, and every
    # surface voxel lies within the 1 mm tolerance of the other surface, so NSD is 1.0 for both
    assert hyp["hd95"]["1"]["mean"] == 0.0 and base["hd95"]["1"]["mean"] == pytest.approx(1.0)
    assert base["nsd"]["1"]["mean"] == 1.0 and hyp["nsd"]["1"]["mean"] == 1.0 and pr["nsd"]["1"]["mean_diff"] == 0.0
    assert pr["hd95"]["1"]["mean_diff"] == pytest.approx(-1.0) and pr["hd95"]["1"]["losses"] == 6
    rl = pr["run_level_fg_dice"]  # one value per run: fold mean of (Dice1 + Dice2) / 2 moves by (0.02 - 0.01) / 2
    assert rl["n"] == 2 and rl["mean_diff"] == pytest.approx(0.005) and rl["wins"] == 2
    assert (rl["ci_low"], rl["ci_high"]) == pytest.approx((0.005, 0.005)) and rl["wilcoxon_p"] == pytest.approx(0.5)
    assert pr["per_fold_fg_dice_diff"] == pytest.approx({"seed0_fold0": 0.005, "seed0_fold1": 0.005})
    ov = hyp["overhead"]["all"]  # two folds, each 3 epochs x 0.02 s agents' time in 3 x 10 s epochs
    assert ov["overhead_s"] == pytest.approx(0.12) and ov["epoch_s"] == 60.0 and ov["share"] == pytest.approx(0.002)
    # 6 epochs' lines x 0.01 s per part over 6 epochs: 10 ms each
    assert ov["ms_per_epoch_by_part"] == pytest.approx({"learning_rate": 10.0, "coordinator": 10.0})
    assert hyp["epoch_s"] == {"median": 10.0, "mean": 10.0, "n": 6}
    # the agents that ran, from each fold's hypera/config.json; fold 1 has none
    assert hyp["agents"] == {"seed0_fold0": ["learning_rate", "loss"], "seed0_fold1": None}
    assert base["agents"] == {"seed0_fold0": [], "seed0_fold1": []}
    assert base["overhead"]["all"] is None
    assert res["trajectories"][HYP]["seed0_fold0"]["lr"][1] == 9.0
    md = (out / "report.md").read_text()
    assert "Not finished" in md and "Wilcoxon" in md and "**Run level**" in md and "learning_rate 10.0" in md
    assert (f"- `{HYP}`: 2 agents: learning_rate, loss (seed0_fold0); agents unknown: no hypera/config.json in "
            "seed0_fold1") in md.splitlines()
    assert f"- `{BASE}`: no agents (seed0_fold0, seed0_fold1)" in md.splitlines()
    # the report leads with the run-level evidence (before the tables), case-level tests are "within one run"
    assert md.index("## Run-level paired differences") < md.index("## Validation Dice per class")
    assert md.index("**Run level**") < md.index("Case level (within one run)")
    # two runs, both +0.005: sign-flip p = 2 of 4 sign vectors; no spread, so no t-test
    assert rl["sign_flip_p"] == pytest.approx(0.5) and rl["sign_flip_exact"] and rl["t_p"] is None
    row = next(x for x in md.splitlines() if x.startswith(f"| {HYP} minus {BASE} | 2 |"))
    assert "| unseeded | 0.0050 | [0.0050, 0.0050] | **0.5000** | n/a | 0.5000 | 0.5 | 2 / 0 |" in row
    assert "Fewer than 6 pairs: a sign-flip or Wilcoxon p below 0.05 is impossible" in md
    assert "noncentral t(n - 1, e·√n)" in md
    assert "| `HyperaTrainer_20epochs_25iters` | 2 |" in md
    for png in ("learning_curves.png", f"trajectories_{HYP}.png"):
        assert (out / png).stat().st_size > 1000
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*.tmp"))


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
    assert cpu.to_dict()["val_iters"] == 5  # 25 // 5 (nnU-Net's 250:50)
    assert cpu.to_dict()["env"] == {"nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "0"}
    assert get_protocol("gpu-full").to_dict()["val_iters"] is None


@pytest.mark.nnunet  # runs nnU-Net's nnUNetv2_evaluate_folder (about 10 s on an idle machine)
def test_refinement_variant_is_scored_and_paired(fake_nnunet, capsys):
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "--out", str(out),
                         "--unseeded",
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
    monkeypatch.setenv("HYPERA_CONFIG", str(cfg))  # a shell's HYPERA_CONFIG reaches no run
    captured = {}

    def fake_run_jobs(jobs, device, env_for, out, **kw):
        captured["env"] = {(j.name, j.fold, j.seed): env_for(j) for j in jobs}
        captured["folders"] = {(j.name, j.seed): j.output_folder for j in jobs}
        return []

    monkeypatch.setattr(bench_cli, "run_jobs", fake_run_jobs)
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         f"HyperaTrainer:{cfg}", "--seeds", "0", "2", "--unseeded", "--out", str(out), "--no-surface",
                         "--bootstrap", "200"])
    assert rc == 0, capsys.readouterr().err
    var, results = f"{HYP}[gs4]", fake_nnunet / "nnUNet_results"
    env = captured["env"]
    assert "HYPERA_CONFIG" not in env[(BASE, 0, 0)] and "HYPERA_CONFIG" not in env[(HYP, 0, 0)]  # not the shell's
    assert env[(var, 0, 0)]["HYPERA_CONFIG"] == str(cfg.resolve())  # seed 0: the file as given (its own seed 5)
    seeded = json.loads(Path(env[(var, 0, 2)]["HYPERA_CONFIG"]).read_text())
    assert seeded["seed"] == 2 and seeded["learning"]["gradient_steps"] == 4
    eff = run_config(HYP, Path(env[(var, 0, 2)]["HYPERA_CONFIG"]))  # merged onto HyperaTrainer's: all six agents
    assert (eff.seed, eff.learning.gradient_steps, list(eff.agents)) == (2, 4, list(ALL_AGENTS))
    # HyperaTrainer's seed 2: a file of the seed alone, which the trainer merges onto its own configuration
    own = Path(env[(HYP, 0, 2)]["HYPERA_CONFIG"])
    assert json.loads(own.read_text()) == {"seed": 2}
    cfg2 = run_config(HYP, own)
    assert (cfg2.seed, cfg2.learning.gradient_steps, list(cfg2.agents)) == (2, 8, list(ALL_AGENTS))
    assert env[(var, 0, 0)]["nnUNet_results"] == str(results / "hypera_variants" / "gs4")
    assert env[(var, 0, 2)]["nnUNet_results"] == str(results / "hypera_variants" / "gs4" / "hypera_seeds" / "seed2")
    assert captured["folders"][(var, 0)] == results / "hypera_variants" / "gs4" / DS / f"{HYP}__{PLANS}__3d_fullres" \
        / "fold_0"
    # a finished variant fold is reported under its own name and paired against the baseline
    make_fold(fake_nnunet, HYP, 0, [(0.9, 0.8)] * 3, shift=0, hypera=True, results=results / "hypera_variants" / "gs4")
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         f"HyperaTrainer:{cfg}", "--out", str(out), "--report-only", "--no-surface", "--unseeded",
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


def test_names_are_checked_without_the_cli_or_the_trainer_classes(fake_nnunet):
    """Imports flow one way: the benchmark asks the variant table (HYPERA) and nnU-Net's lookup (nnU-Net's own)."""
    out = fake_nnunet / "bench"
    code = ("import sys\nfrom hypera_nnunet.benchmark import cli\n"
            f"rc = cli.main(['-d', '999', '-f', '0', '-tr', 'nnUNetTrainer', 'HyperaTrainer_Shadow', '--seeds', '0', "
            f"'1', '--unseeded', '--out', {str(out)!r}, '--dry-run'])\n"
            "print(rc, 'hypera_nnunet.cli' in sys.modules, 'hypera_nnunet.nnunet.trainers' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.splitlines()[-1] == "0 False False", done.stdout + done.stderr
    # seed 1 of the Shadow variant: the seed alone, merged by the trainer onto its configuration (six agents, shadow)
    seeded = out / "configs" / "HyperaTrainer_Shadow_50epochs_25iters_seed1.json"
    assert json.loads(seeded.read_text()) == {"seed": 1}
    cfg = run_config("HyperaTrainer_Shadow_50epochs_25iters", seeded)
    assert (cfg.seed, cfg.shadow, list(cfg.agents), cfg.learning.gradient_steps) == (1, True, list(ALL_AGENTS), 8)


def test_known_trainer_names():
    from hypera_nnunet.nnunet.names import is_nnunet_trainer, known_trainer

    assert known_trainer("HyperaTrainer_LR_10epochs_5iters") and known_trainer("nnUNetTrainer_20epochs_25iters")
    assert is_nnunet_trainer("nnUNetTrainerNoDA") and is_nnunet_trainer("nnUNetTrainer_5epochs")
    assert not known_trainer("nnUNetTrainer_7epochs") and not known_trainer("HyperaTrainer_Nope")
    assert not is_nnunet_trainer("HyperaTrainer")  # HYPERA's trainers are not nnU-Net's


def test_transfer_variant_seed_config_needs_its_source(fake_nnunet, monkeypatch, capsys):
    monkeypatch.delenv("HYPERA_TRANSFER", raising=False)
    out = str(fake_nnunet / "bench")
    assert bench_cli.main(["-d", "999", "-tr", "HyperaTrainer_Frozen", "--seeds", "1", "--unseeded", "--out", out,
                           "--dry-run"]) == 2
    assert "HyperaTrainer_Frozen_50epochs_25iters needs HYPERA_TRANSFER" in capsys.readouterr().err
    src = fake_nnunet / "policies.pt"
    monkeypatch.setenv("HYPERA_TRANSFER", str(src))
    assert bench_cli.main(["-d", "999", "-tr", "HyperaTrainer_Frozen", "--seeds", "1", "--unseeded", "--out", out,
                           "--dry-run"]) == 0
    seeded = fake_nnunet / "bench" / "configs" / "HyperaTrainer_Frozen_50epochs_25iters_seed1.json"
    cfg = run_config("HyperaTrainer_Frozen_50epochs_25iters", seeded)
    assert (cfg.transfer.source, cfg.transfer.mode, cfg.seed) == (str(src), "frozen", 1)


def test_dataset_given_by_name_and_names_that_do_not_resolve(fake_nnunet, capsys):
    out = str(fake_nnunet / "bench")
    assert bench_cli.main(["-d", DS, "-f", "0", "--out", out, "--dry-run"]) == 0
    assert f"benchmark {DS} 3d_fullres" in capsys.readouterr().out
    assert bench_cli.main(["-d", "Dataset998_Other", "--out", out, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "dataset 'Dataset998_Other' was never preprocessed" in err and len(err.strip().splitlines()) == 1
    assert bench_cli.main(["-d", "hippo", "--out", out, "--dry-run"]) == 2
    assert "dataset 'hippo' is neither an nnU-Net dataset id nor a name" in capsys.readouterr().err
