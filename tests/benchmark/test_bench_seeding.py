"""Seeded benchmarks: the HYPERA_SEED each job gets, where seeded runs live, the warning for nnU-Net's own
trainers, what a run's files say about its seed, and the refusal to pair runs that were not seeded alike."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from bench_fakes import BASE, DS, HYP, PLANS, make_fold

from hypera_nnunet.benchmark import cli as bench_cli
from hypera_nnunet.benchmark.collect import read_run_seed
from hypera_nnunet.benchmark.runner import run_jobs

FAKE_TRAIN = """#!{python}
import json, os, pathlib, sys
a = sys.argv[1:]
out = pathlib.Path(os.environ["nnUNet_results"]) / a[0] / f"{{a[4]}}__{{a[6]}}__{{a[1]}}" / f"fold_{{a[2]}}"
(out / "validation").mkdir(parents=True, exist_ok=True)
with open({calls!r}, "a") as f:
    f.write(json.dumps({{"trainer": a[4], "fold": a[2], "HYPERA_SEED": os.environ.get("HYPERA_SEED"),
                        "HYPERA_CONFIG": os.environ.get("HYPERA_CONFIG"),
                        "nnUNet_results": os.environ["nnUNet_results"]}}) + "\\n")
(out / "validation" / "summary.json").write_text("{{}}")
"""


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    """``nnUNetv2_train`` replaced by a script that records the environment it was given."""
    exe_dir, calls = tmp_path / "bin", tmp_path / "calls.jsonl"
    exe_dir.mkdir()
    exe = exe_dir / "nnUNetv2_train"
    exe.write_text(FAKE_TRAIN.format(python=sys.executable, calls=str(calls)))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)

    def real_run_jobs(jobs, device, env_for, out, **kw):
        return run_jobs(jobs, device, env_for, out, concurrency=1, npz=kw.get("npz", False), poll_s=0.05,
                        exe_dir=exe_dir, stream=open(os.devnull, "w"))

    monkeypatch.setattr(bench_cli, "run_jobs", real_run_jobs)
    monkeypatch.setattr(bench_cli, "write_report", lambda *a, **k: 0)  # the fake summaries hold no metrics
    return lambda: [json.loads(x) for x in calls.read_text().splitlines()]


def test_every_job_of_a_seeded_benchmark_gets_its_seed(fake_nnunet, fake_train, monkeypatch):
    cfg = fake_nnunet / "gs4.json"
    cfg.write_text(json.dumps({"learning": {"gradient_steps": 4}}))
    monkeypatch.setenv("HYPERA_SEED", "99")  # the shell's seed reaches no run
    monkeypatch.setenv("HYPERA_CONFIG", str(cfg))
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "1", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         f"HyperaTrainer:{cfg}", "--seeds", "3", "7", "--out", str(fake_nnunet / "bench")])
    assert rc == 0
    calls = fake_train()
    assert len(calls) == 12  # 2 seeds x 2 folds x 3 trainers
    results = fake_nnunet / "nnUNet_results"
    by_job = {(c["trainer"], c["fold"], c["nnUNet_results"]): c for c in calls}
    for seed in (3, 7):
        for fold in ("0", "1"):
            base = by_job[(BASE, fold, str(results / "hypera_seeded" / f"seed{seed}"))]
            hyp = by_job[(HYP, fold, str(results / "hypera_seeded" / f"seed{seed}"))]
            var = by_job[(HYP, fold, str(results / "hypera_variants" / "gs4" / "hypera_seeded" / f"seed{seed}"))]
            # all three trainers of one (fold, seed) share one HYPERA_SEED: common random numbers
            assert base["HYPERA_SEED"] == hyp["HYPERA_SEED"] == var["HYPERA_SEED"] == str(seed)
            # no seed files: HYPERA_SEED seeds the agents too; the variant's file as given, no shell's file
            assert base["HYPERA_CONFIG"] is None and hyp["HYPERA_CONFIG"] is None
            assert var["HYPERA_CONFIG"] == str(cfg.resolve())
    assert not (fake_nnunet / "bench" / "configs").exists()
    # runs.jsonl records the seed each command ran with and its results folder
    lines = [json.loads(x) for x in (fake_nnunet / "bench" / "runs.jsonl").read_text().splitlines()]
    assert sorted({x["HYPERA_SEED"] for x in lines}) == ["3", "7"]
    assert all("/hypera_seeded/seed" in x["output_folder"] for x in lines)


def test_unseeded_repetitions_keep_the_earlier_layout_and_get_no_seed(fake_nnunet, fake_train, monkeypatch):
    monkeypatch.setenv("HYPERA_SEED", "99")
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "2", "-tr", "nnUNetTrainer", "HyperaTrainer",
                         "--seeds", "0", "4", "--unseeded", "--out", str(fake_nnunet / "bench")])
    assert rc == 0
    calls = fake_train()
    results = fake_nnunet / "nnUNet_results"
    assert all(c["HYPERA_SEED"] is None for c in calls)
    assert {(c["trainer"], c["nnUNet_results"]) for c in calls} == {
        (BASE, str(results)), (HYP, str(results)), (BASE, str(results / "hypera_seeds" / "seed4")),
        (HYP, str(results / "hypera_seeds" / "seed4"))}
    seeded_cfg = next(c["HYPERA_CONFIG"] for c in calls if c["trainer"] == HYP and "seed4" in c["nnUNet_results"])
    assert json.loads(open(seeded_cfg).read()) == {"seed": 4}  # the agents' seed, the earlier way


def test_nnunets_own_trainer_in_a_seeded_benchmark_is_named_in_one_line(fake_nnunet, capsys):
    out = str(fake_nnunet / "bench")
    full = ["-d", "999", "--protocol", "gpu-full", "-p", PLANS, "-f", "0", "--out", out, "--dry-run"]
    assert bench_cli.main([*full, "-tr", "nnUNetTrainer", "HyperaTrainer"]) == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert err == [bench_cli.unseedable_warning("nnUNetTrainer")]
    assert "nnUNetTrainerSeedable" in err[0] and "_<E>epochs_<I>iters" in err[0] and "cannot be seeded" in err[0]
    # the seedable baseline at nnU-Net's budget is accepted, and seeded quietly
    assert bench_cli.main([*full, "-tr", "nnUNetTrainerSeedable", "HyperaTrainer"]) == 0
    assert capsys.readouterr().err == ""
    # a budget protocol's nnUNetTrainer is the seedable nnUNetTrainer_<E>epochs_<I>iters: no warning
    assert bench_cli.main(["-d", "999", "-f", "0", "--out", out, "--dry-run"]) == 0
    assert capsys.readouterr().err == ""
    # --unseeded: nothing to warn about
    assert bench_cli.main(["-d", "999", "--protocol", "gpu-full", "-p", PLANS, "-f", "0", "--unseeded", "--out", out,
                           "--dry-run"]) == 0
    assert capsys.readouterr().err == ""
    # the seedable baseline at a protocol's budget does not exist: one line says what to give instead
    assert bench_cli.main(["-d", "999", "-f", "0", "-tr", "nnUNetTrainerSeedable", "--out", out, "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give nnUNetTrainer" in err[0]
    assert bench_cli.main(["-d", "999", "-f", "0", "--seeds", "-1", "--out", out, "--dry-run"]) == 2
    assert "HYPERA_SEED takes seeds in [0, 2^32)" in capsys.readouterr().err
    assert [bench_cli.seedable(t) for t in ("nnUNetTrainer", "nnUNetTrainer_50epochs", "nnUNetTrainerNoDA",
                                            "nnUNetTrainer_50epochs_25iters", "nnUNetTrainerSeedable",
                                            "HyperaTrainer", "HyperaTrainer_Shadow_10epochs_25iters")] == \
        [False, False, False, True, True, True, True]


def test_a_runs_seed_is_read_from_its_own_files(tmp_path):
    hyp = make_fold(tmp_path, HYP, 0, [(0.8, 0.7)], shift=0, hypera=True, agents=["loss"], hypera_seed=5)
    base = make_fold(tmp_path, BASE, 0, [(0.8, 0.7)], shift=0, hypera=False, hypera_seed=5)
    old = make_fold(tmp_path, BASE, 1, [(0.8, 0.7)], shift=0, hypera=False)
    old_hyp = make_fold(tmp_path, HYP, 1, [(0.8, 0.7)], shift=0, hypera=True, agents=["loss"])
    assert read_run_seed(hyp) == 5  # hypera/config.json "hypera_seed"
    assert read_run_seed(base) == 5  # the rng extras beside checkpoint_final
    assert read_run_seed(old) is None and read_run_seed(old_hyp) is None  # nothing seeded them
    (hyp / "hypera" / "config.json").write_text(json.dumps({"agents": ["loss"], "hypera_seed": None}))
    assert read_run_seed(hyp) is None  # a HYPERA run that recorded it was not seeded


def _seeded_folds(root, base_seed, hyp_seed, seed=1):
    results = root / "nnUNet_results" / "hypera_seeded" / f"seed{seed}"
    for f, (ema_b, ema_h) in enumerate((([0.2, 0.3, 0.4], [0.1, 0.2, 0.3]), ([0.2, 0.3, 0.4], [0.39, 0.395, 0.4]))):
        make_fold(root, BASE, f, [(0.80, 0.70)] * 2, shift=0, hypera=False, results=results, ema=ema_b,
                  hypera_seed=base_seed)
        make_fold(root, HYP, f, [(0.80 + 0.01 * (f + 1), 0.70)] * 2, shift=0, hypera=True, results=results,
                  agents=["loss"], ema=ema_h, hypera_seed=hyp_seed)


def test_runs_seeded_alike_are_paired_with_learning_metrics_and_cpu_seconds(fake_nnunet, capsys):
    _seeded_folds(fake_nnunet, 1, 1)
    out = fake_nnunet / "bench"
    out.mkdir()
    lines = [{"job": "x", "trainer": t, "variant": "", "fold": f, "seed": 1, "cpu_s": cpu, "HYPERA_SEED": "1",
              "output_folder": str(fake_nnunet / "nnUNet_results" / "hypera_seeded" / "seed1" / DS
                                   / f"{t}__{PLANS}__3d_fullres" / f"fold_{f}")}
             for t, f, cpu in ((BASE, 0, 100.0), (BASE, 0, 20.5), (BASE, 1, 110.0), (HYP, 0, 130.0), (HYP, 1, 150.0))]
    (out / "runs.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "1", "--seeds", "1", "--out", str(out),
                         "--report-only", "--no-surface", "--bootstrap", "200"])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["seeding"] == {"seeded": True, "variable": "HYPERA_SEED", "seeds": [1],
                                      "unseedable_trainers": []}
    assert res["per_trainer"][BASE]["hypera_seed"] == {"seed1_fold0": 1, "seed1_fold1": 1}
    pr = res["paired"][HYP]
    assert "refused" not in pr and pr["run_seeds"] == {"seed1_fold0": 1, "seed1_fold1": 1}
    rl = pr["run_level_fg_dice"]  # fold means of (Dice1 + Dice2) / 2 move by 0.005 and 0.010
    assert rl["n"] == 2 and rl["mean_diff"] == pytest.approx(0.0075) and rl["sign_flip_p"] == pytest.approx(0.5)
    # learning: the baseline's final EMA pseudo Dice is 0.4 in both folds, so the target is 0.95 x 0.4 = 0.38
    learn = res["per_trainer"][HYP]["learning"]
    assert learn["seed1_fold0"]["pseudo_dice_auc"] == pytest.approx(0.2)  # mean of 0.1, 0.2, 0.3
    assert learn["seed1_fold0"]["reach_target"] == pytest.approx(0.38)
    assert learn["seed1_fold0"]["censored"] and learn["seed1_fold0"]["epochs_to_reach"] is None  # never: "> 3"
    assert learn["seed1_fold1"]["epochs_to_reach"] == 1 and not learn["seed1_fold1"]["censored"]  # 0.39 at once
    summ = res["per_trainer"][HYP]["learning_summary"]
    assert (summ["runs_with_target"], summ["reached"], summ["censored"], summ["censored_at_epochs"]) == (2, 1, 1, 3)
    assert res["per_trainer"][BASE]["learning"]["seed1_fold0"]["epochs_to_reach"] == 3  # 0.4 >= 0.38 at epoch 3
    assert pr["run_level_pseudo_dice_auc"]["mean_diff"] == pytest.approx(((0.2 - 0.3) + (0.395 - 0.3)) / 2)
    # CPU seconds per run, a resumed run's commands summed
    cpu = res["per_trainer"][BASE]["cpu_s"]
    assert cpu["per_run"] == {"seed1_fold0": 120.5, "seed1_fold1": 110.0}
    assert cpu["summary"]["mean"] == pytest.approx(115.25)
    md = (out / "report.md").read_text()
    assert "Seeded: every training of seed s ran with `HYPERA_SEED=s`" in md
    assert f"| `{HYP}` | seed1_fold0 | HYPERA_SEED=1 | 0 | 0.7000 | 0.2000 | > 3 | 130 |" in md
    assert f"| `{HYP}` | 2 | 0.2975 ± 0.1379 (n=2) | 1 / 2 | 1 (> 3) |" in md


def test_runs_not_seeded_alike_are_not_paired(fake_nnunet, capsys):
    _seeded_folds(fake_nnunet, 1, None)  # the baseline seeded, the HYPERA runs not (e.g. made before seeding)
    out = fake_nnunet / "bench"
    rc = bench_cli.main(["-d", "999", "--protocol", "cpu", "-f", "0", "1", "--seeds", "1", "--out", str(out),
                         "--report-only", "--no-surface", "--bootstrap", "200"])
    assert rc == 0
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert len(err) == 1 and err[0].startswith(f"hypera-nnunet: not paired: {HYP} and {BASE} were not seeded alike "
                                               "in 2 run(s), e.g. seed1_fold0: unseeded (")
    res = json.loads((out / "results.json").read_text())
    pr = res["paired"][HYP]
    assert pr["refused"] == err[0].removeprefix("hypera-nnunet: ") and pr["unlike_runs"] == ["seed1_fold0",
                                                                                           "seed1_fold1"]
    assert "run_level_fg_dice" not in pr and res["refused_pairings"] == [pr["refused"]]
    md = (out / "report.md").read_text()
    assert f"| {HYP} minus {BASE} | refused |" in md and f"**Refused:** {pr['refused']}" in md
