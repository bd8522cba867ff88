"""The search on real nnU-Net trainings (the Hippocampus subset, a tiny budget): the nnunet: section reaches
nnU-Net's optimizer, loss, schedule and batches; a pruned trial's training is stopped; a study killed mid-trial
resumes that trial from its checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.nnunet

SECTION = {"initial_lr": 0.02, "weight_decay": 1e-4, "momentum": 0.9, "ce_weight": 0.5, "dice_weight": 1.5,
           "aug_prob": 0.5, "batch_size": 3, "epochs": 4, "iterations": 6, "schedule_epochs": 9}


@pytest.fixture
def nnunet_env(hippo, monkeypatch):
    env, name, root = hippo
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("HYPERA_SEED", raising=False)
    return env, name, root


def _trainer(cls_name, root, name, cfg_file, monkeypatch):
    import hypera_nnunet.nnunet.trainers as tr

    monkeypatch.setenv("HYPERA_CONFIG", str(cfg_file))
    plans = json.loads((root / "pre" / name / "hyperaCPUPlans.json").read_text())
    plans["continue_training"] = False
    ds = json.loads((root / "pre" / name / "dataset.json").read_text())
    t = getattr(tr, cls_name)(plans, "3d_fullres", 0, ds, torch.device("cpu"))
    t.initialize()
    return t, plans


@pytest.mark.parametrize("cls_name", ["nnUNetTrainerConfigured", "HyperaTrainer_Shadow"])
def test_the_nnunet_section_reaches_nnunet(nnunet_env, tmp_path, monkeypatch, cls_name):
    env, name, root = nnunet_env
    cfg = tmp_path / "trial.json"
    cfg.write_text(json.dumps({"nnunet": SECTION}))
    t, plans = _trainer(cls_name, root, name, cfg, monkeypatch)
    g = t.optimizer.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"], g["nesterov"]) == (0.02, 1e-4, 0.9, True)
    inner = t.loss.loss
    assert (inner.weight_ce, inner.weight_dice) == (0.5, 1.5)
    assert (t.num_epochs, t.num_iterations_per_epoch, t.num_val_iterations_per_epoch) == (4, 6, 2)
    assert t.lr_scheduler.max_steps == 9  # the poly schedule spans 9 epochs although this run trains 4
    t.lr_scheduler.step(3)
    assert g["lr"] == pytest.approx(0.02 * (1 - 3 / 9) ** 0.9)
    assert t.batch_size == 3 and t.configuration_manager.batch_size == 3
    assert plans["configurations"]["3d_fullres"]["batch_size"] == 2  # the plans themselves stay as planned
    t.dataloader_train, t.dataloader_val = t.get_dataloaders()
    assert next(t.dataloader_train)["data"].shape[0] == 3
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    probs = [x.apply_probability for x in t.dataloader_train.data_loader.transforms.transforms
             if isinstance(x, RandomTransform)]
    assert probs == pytest.approx([p / 2 for p in [0.1, 0.2, 0.15, 0.15, 0.25, 0.1, 0.3]])


def test_without_a_section_the_values_are_nnunets(nnunet_env, tmp_path, monkeypatch):
    env, name, root = nnunet_env
    cfg = tmp_path / "empty.json"
    cfg.write_text("{}")
    t, _ = _trainer("nnUNetTrainerConfigured", root, name, cfg, monkeypatch)
    g = t.optimizer.param_groups[0]
    assert (g["lr"], g["weight_decay"], g["momentum"]) == (1e-2, 3e-5, 0.99)
    assert (t.loss.loss.weight_ce, t.loss.loss.weight_dice, t.num_epochs, t.lr_scheduler.max_steps) == (1, 1, 1000,
                                                                                                        1000)


def _space(tmp_path, max_epochs=3, extra=""):
    p = tmp_path / "space.yaml"
    p.write_text(f"""objective: nnunet
trainer: nnUNetTrainerConfigured
dataset: 904
configuration: 3d_fullres
plans: hyperaCPUPlans
fold: 0
seed: 5
fidelity: {{min_epochs: 1, max_epochs: {max_epochs}, iterations: 5}}
params:
  nnunet.initial_lr: {{low: 0.001, high: 0.03, log: true}}
{extra}""")
    return p


def test_a_pruned_trial_stops_its_training(nnunet_env, tmp_path):
    from hypera_nnunet.search.space import load_space
    from hypera_nnunet.search.study import create_or_check, make_objective, open_study, summary

    p = _space(tmp_path, max_epochs=5)
    study_dir = tmp_path / "st"
    from hypera_nnunet.config import read_config_file

    create_or_check(study_dir, read_config_file(p), str(p), "random", "none", 0)
    study, space, _ = open_study(study_dir)
    pruned = optuna.create_study(study_name=study.study_name, storage=study._storage, direction="maximize",
                                 load_if_exists=True, sampler=optuna.samplers.RandomSampler(seed=0),
                                 pruner=optuna.pruners.ThresholdPruner(lower=0.99))  # every epoch is below 0.99
    t0 = time.monotonic()
    pruned.optimize(make_objective(load_space(p), study_dir), n_trials=1)
    rows = summary(study_dir)["rows"]
    assert [(r["state"], r["epochs"]) for r in rows] == [("PRUNED", 1)]
    fold = next((study_dir / "trials" / "0000" / "nnUNet_results").glob("*/*/fold_0"))
    lines = (fold / "epochs.jsonl").read_text().splitlines()
    assert 1 <= len(lines) < 5  # stopped long before its 5 epochs
    assert not (fold / "validation" / "summary.json").exists()
    assert time.monotonic() - t0 < 300


def test_a_study_killed_mid_trial_resumes_it_from_its_checkpoint(nnunet_env, tmp_path):
    env, name, root = nnunet_env
    p = _space(tmp_path, max_epochs=4)
    study = tmp_path / "st"
    cmd = [sys.executable, "-m", "hypera_nnunet.cli", "search", "run", str(p), "--study", str(study), "-n", "1",
           "--pruner", "none", "--seed", "0"]
    proc = subprocess.Popen(cmd, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    trial = study / "trials" / "0000"
    fold = None
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            folds = list((trial / "nnUNet_results").glob("*/*/fold_0"))
            lines = folds[0] / "epochs.jsonl" if folds else None
            if lines is not None and (folds[0] / "checkpoint_latest.pth").is_file() and lines.is_file() and \
                    len(lines.read_text().splitlines()) >= 2:
                fold = folds[0]
                break
            time.sleep(0.2)
    finally:  # the search and its workers; the training dies with them (its watchdog), also when this test fails
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert fold is not None, f"the trial never reached its second epoch (search exit {proc.returncode})"
    time.sleep(1.0)
    done_before = len((fold / "epochs.jsonl").read_text().splitlines())
    assert done_before < 4
    r = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resumes trial folder 0000" in r.stdout
    from hypera_nnunet.search.study import summary

    rows = summary(study)["rows"]
    assert [(x["state"], x["stale"], x["resume_of"]) for x in rows] == [("FAIL", True, None),
                                                                       ("COMPLETE", False, "0000")]
    log = (trial / "train.log").read_text()
    assert log.count("$ ") == 2 and "--c" in log.splitlines()[[i for i, x in enumerate(log.splitlines())
                                                                if x.startswith("$ ")][1]]
    epochs = [json.loads(x)["epoch"] for x in (fold / "epochs.jsonl").read_text().splitlines()]
    assert sorted(set(epochs)) == [0, 1, 2, 3]  # continued, not restarted: epochs up to the checkpoint kept
    assert epochs[:done_before] == list(range(done_before))
    assert rows[1]["value"] == json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"][
        "Dice"]
