"""Run-level choices on the real Hippocampus subset: the poly exponent, warm-up and late CE weight reach nnU-Net
with their exact values, a plateau stops a real training early (validated, the budget left written down), and the
schedule agent asks the store's study for each run's point and tells it the run's outcome."""

from __future__ import annotations

import json

import pytest
import torch

from hypera_nnunet.data import run_nnunet

pytestmark = pytest.mark.nnunet
PLANS = "hyperaCPUPlans"


@pytest.fixture
def env(hippo, monkeypatch):
    env, name, root = hippo
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_extTrainer"):
        monkeypatch.setenv(k, env[k])
    for k in ("HYPERA_SEED", "HYPERA_STORE", "HYPERA_CONFIG"):
        monkeypatch.delenv(k, raising=False)
    return env, name, root


def test_schedule_settings_reach_nnunet(env, tmp_path, monkeypatch):
    import hypera_nnunet.nnunet.trainers as tr

    _, name, root = env
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"nnunet": {"poly_exponent": 2.0, "warmup_epochs": 2, "ce_weight": 0.5,
                                          "ce_weight_late": 1.5, "epochs": 5}}))
    monkeypatch.setenv("HYPERA_CONFIG", str(cfg))
    plans = json.loads((root / "pre" / name / f"{PLANS}.json").read_text())
    plans["continue_training"] = False
    ds = json.loads((root / "pre" / name / "dataset.json").read_text())
    t = tr.nnUNetTrainerConfigured(plans, "3d_fullres", 0, ds, torch.device("cpu"))
    t.initialize()
    assert t.lr_scheduler.exponent == 2.0
    lrs, ces = [], []
    for e in range(5):
        t.current_epoch = e
        t.on_train_epoch_start()
        lrs.append(t.optimizer.param_groups[0]["lr"])
        ces.append(t.loss.loss.weight_ce)
    poly = [0.01 * (1 - e / 5) ** 2.0 for e in range(5)]
    assert lrs == pytest.approx([poly[0] / 3, poly[1] * 2 / 3, poly[2], poly[3], poly[4]])
    assert t.logger.local_logger.my_fantastic_logging["lrs"] == pytest.approx(lrs)  # what nnU-Net plots
    assert ces == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.5])


def _train(env, trainer, fold, extra_env):
    e, name, root = env
    run_nnunet(["nnUNetv2_train", "904", "3d_fullres", str(fold), "-tr", trainer, "-p", PLANS, "-device", "cpu"],
               env={**e, **extra_env})
    return root / "res" / name / f"{trainer}__{PLANS}__3d_fullres" / f"fold_{fold}"


def test_a_plateau_stops_a_real_training_early(env, tmp_path):
    cfg = tmp_path / "stop.json"  # no rise of 1.0 ever: it stops once the patience of 1 epoch has passed
    cfg.write_text(json.dumps({"nnunet": {"epochs": 4, "iterations": 3, "stop_patience": 1, "stop_min_delta": 1.0}}))
    fold = _train(env, "nnUNetTrainerConfigured", 1, {"HYPERA_CONFIG": str(cfg), "HYPERA_SEED": "3"})
    rec = json.loads((fold / "early_stop.json").read_text())
    assert {k: rec[k] for k in ("stopped_after_epoch", "epochs_trained", "num_epochs", "epochs_left",
                                "budget_left")} == {"stopped_after_epoch": 1, "epochs_trained": 2, "num_epochs": 4,
                                                    "epochs_left": 2, "budget_left": 0.5}
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert ckpt["current_epoch"] == 2 and len(ckpt["logging"]["ema_fg_dice"]) == 2
    assert (fold / "validation" / "summary.json").is_file()  # nnU-Net's final validation ran
    assert [json.loads(x)["epoch"] for x in (fold / "epochs.jsonl").read_text().splitlines()] == [0, 1]


def test_the_schedule_agent_asks_and_tells_the_store_study(env, tmp_path):
    optuna = pytest.importorskip("optuna")
    from hypera_nnunet.search.study import open_study

    space = tmp_path / "sched.yaml"
    space.write_text("objective: nnunet\ndataset: 904\nseed: 0\nparams:\n"
                     "  nnunet.initial_lr: {low: 0.001, high: 0.03, log: true}\n"
                     "  nnunet.poly_exponent: {low: 0.5, high: 2.0}\n")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"schedule": {"space": str(space)}, "nnunet": {"epochs": 1, "iterations": 2}}))
    store = tmp_path / "store"
    folds = [_train(env, "nnUNetTrainerConfigured", f, {"HYPERA_CONFIG": str(cfg), "HYPERA_STORE": str(store)})
             for f in (2, 3)]
    study, _, _ = open_study(store / "schedule" / "sched")
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t, fold in zip(trials, folds):
        summary = json.loads((fold / "validation" / "summary.json").read_text())
        assert t.value == summary["foreground_mean"]["Dice"]
        ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        assert ckpt["logging"]["lrs"][0] == pytest.approx(t.params["nnunet.initial_lr"])  # epoch 0: poly factor 1
        kept = json.loads((fold / "hypera" / "schedule_trial.json").read_text())
        assert kept["number"] == t.number and kept["told"] and kept["value"] == t.value
