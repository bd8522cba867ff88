"""The real nnU-Net CLI on real Hippocampus data at a tiny CPU budget: plan, HyperaTrainer train,
resume with --c, predict, nnUNetv2_evaluate_folder."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from hypera_nnunet.data import run_nnunet

pytestmark = pytest.mark.nnunet
TRAINER = "HyperaTrainer_3epochs_5iters"
PLANS = "hyperaCPUPlans"
SIX = ("learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization")


@pytest.fixture(scope="module")
def trained(hippo, tmp_path_factory):
    """All six agents for 3 epochs: paused after 2 (as a killed job would stop), then resumed with --c."""
    env, name, root = hippo
    cfg = tmp_path_factory.mktemp("cfg") / "hypera.json"
    store = tmp_path_factory.mktemp("store") / "experience"
    cfg.write_text(json.dumps({"agents": {a: {} for a in SIX}, "pause_after_epochs": 2, "seed": 0,
                               "tensorboard": True, "store": str(store)}))
    env = {**env, "HYPERA_CONFIG": str(cfg)}
    cmd = ["nnUNetv2_train", "904", "3d_fullres", "0", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"]
    run_nnunet(cmd, env=env)
    fold = root / "res" / name / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    paused = {"lines": _lines(fold / "hypera" / "decisions.jsonl"),
              "final_exists": (fold / "checkpoint_final.pth").exists(),
              "latest": torch.load(fold / "checkpoint_latest.pth", map_location="cpu", weights_only=False),
              "agent_files": sorted(p.name for p in (fold / "hypera").glob("checkpoint_*.pt"))}
    with open(fold / "hypera" / "decisions.jsonl", "ab") as f:  # a torn line, as a kill mid-write leaves
        f.write(b'{"epoch": 2, "val')
    paused["store_epochs"] = json.loads(next(store.glob("runs/*/run.json")).read_text())["epochs_done"]
    run_nnunet(cmd + ["--c"], env=env)
    paused["store"] = store
    return env, name, root, fold, paused


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_pause_leaves_a_resumable_checkpoint(trained):
    env, name, root, fold, paused = trained
    assert not paused["final_exists"]
    assert [x["epoch"] for x in paused["lines"]] == [0, 1]
    assert paused["latest"]["current_epoch"] == 2 and "hypera" not in paused["latest"]  # nnU-Net's own keys only
    assert "checkpoint_latest.e00002.pt" in paused["agent_files"]  # the agents' state for that epoch, beside it


def test_resume_with_c_continues_with_identical_agent_state(trained):
    env, name, root, fold, paused = trained
    lines = _lines(fold / "hypera" / "decisions.jsonl")
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    assert lines[:2] == paused["lines"]  # the paused run's lines are kept, not rewritten
    # the agent state the resumed run starts epoch 2 with is exactly the one the first run ended epoch 1 with:
    # networks, optimizers, temperatures, replay buffers, generators, normalisers, trust, knob values
    assert lines[2]["fingerprint_start"] == lines[1]["fingerprint_end"]
    damaged = list((fold / "hypera").glob("decisions.damaged-*.jsonl"))  # the torn line, moved aside and named
    assert len(damaged) == 1 and damaged[0].read_bytes() == b'{"epoch": 2, "val\n'
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert "is damaged (line 3: not JSON (torn line?)); kept its first 2 records and moved" in log
    for agent, st in lines[2]["agent_state"].items():
        assert st["buffer"] == lines[1]["agent_state"][agent]["buffer"] + 1
        assert st["decisions"] > lines[1]["agent_state"][agent]["decisions"]
    assert (fold / "checkpoint_final.pth").is_file()


def test_the_store_run_continues_across_the_resume(trained):
    """The paused run wrote two epochs to its store; the resumed run continues the same run id to the end."""
    from hypera_nnunet.store import ExperienceStore

    env, name, root, fold, paused = trained
    assert paused["store_epochs"] == 2
    (run,) = ExperienceStore(paused["store"]).runs()
    lines = _lines(fold / "hypera" / "decisions.jsonl")
    assert sorted(run.transitions) == sorted(SIX) and run.meta["resumed_at"] == [2]
    for agent, t in run.transitions.items():
        # every transition of the run once: as many as the agent's buffer holds at the end (it started empty),
        # in epoch order, the last from epoch 2 (an after-validation agent's first one completes in epoch 1)
        assert len(t) == lines[-1]["agent_state"][agent]["buffer"]
        assert t.epoch.tolist() == sorted(t.epoch.tolist()) and t.epoch[-1] == 2 and t.epoch[0] in (0, 1)
        per_epoch = {int(e): float(r) for e, r in zip(t.epoch, t.reward)}
        by_epoch = {x["epoch"]: x["rewards"][agent] for x in lines}
        assert per_epoch == pytest.approx({e: by_epoch[e] for e in per_epoch})
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert run.outcome["foreground_mean"] == summary["foreground_mean"]["Dice"]
    assert run.meta["identity"]["num_epochs"] == 3 and run.meta["ema_fg_dice"] == pytest.approx(
        torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["logging"]["ema_fg_dice"])


def test_decisions_within_bounds_and_applied_to_nnunet(trained):
    env, name, root, fold, paused = trained
    lines = _lines(fold / "hypera" / "decisions.jsonl")
    cfg = json.loads((fold / "hypera" / "config.json").read_text())
    assert sorted(cfg["agents"]) == sorted(SIX)
    bound, step = math.log(2.0), 0.25  # AgentSettings defaults
    prev = {k: 0.0 for k in lines[0]["multipliers"]}
    for x in lines:
        for knob, m in x["multipliers"].items():
            assert abs(math.log(m)) <= bound + 1e-6, (knob, m)
            assert abs(math.log(m) - prev[knob]) <= step + 1e-6, (knob, m)
            prev[knob] = math.log(m)
        assert x["applied"] is True and set(x["rewards"]) == set(SIX)
        # everything HYPERA adds is timed: agents, coordinator, and the trainer's gradient norms and signals
        ov = x["overhead_s"]
        assert ov["trainer_grad_norm"] > 0 and ov["trainer_signals"] > 0 and ov["coordinator"] > 0
        parts = sum(v for k, v in ov.items() if k not in ("total", "dataloader_rebuild"))
        assert ov["total"] == pytest.approx(parts, abs=1e-5) and set(SIX) <= set(ov)
    # the LR nnU-Net used is its poly schedule times the agent's multiplier
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    for e, x in enumerate(lines):
        poly = 1e-2 * (1 - e / 3) ** 0.9
        assert ckpt["logging"]["lrs"][e] == pytest.approx(poly * x["multipliers"]["lr"], rel=1e-5)
        assert ckpt["logging"]["hypera_lr"][e] == pytest.approx(x["multipliers"]["lr"])
    from hypera_nnunet.nnunet.checkpoint import load_agent_state

    assert set(load_agent_state(fold / "checkpoint_final.pth", 3)["hypera"]["agents"]) == set(SIX)
    assert (fold / "hypera" / "policies.pt").is_file() and (fold / "progress.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(fold / "hypera" / "tensorboard"))
    tb.Reload()
    assert [round(e.value, 5) for e in tb.Scalars("knob/lr")] == [round(x["multipliers"]["lr"], 5) for x in lines]
    from PIL import Image

    with Image.open(fold / "progress.png") as main, Image.open(fold / "progress_hypera.png") as panel:
        assert main.height > panel.height and main.height - panel.height >= 1000  # nnU-Net's panels + ours
    assert (fold / "validation" / "summary.json").is_file()


def test_predict_and_evaluate_folder_read_the_hypera_model(trained, tmp_path):
    env, name, root, fold, paused = trained
    split = json.loads((root / "pre" / name / "splits_final.json").read_text())[0]["val"][:2]
    img_in, gt = tmp_path / "in", tmp_path / "gt"
    img_in.mkdir()
    gt.mkdir()
    raw = root / "raw" / name
    for case in split:
        os.symlink(raw / "imagesTr" / f"{case}_0000.nii.gz", img_in / f"{case}_0000.nii.gz")
        os.symlink(raw / "labelsTr" / f"{case}.nii.gz", gt / f"{case}.nii.gz")
    out = tmp_path / "pred"
    run_nnunet(["nnUNetv2_predict", "-i", str(img_in), "-o", str(out), "-d", "904", "-c", "3d_fullres", "-tr",
                TRAINER, "-p", PLANS, "-f", "0", "-device", "cpu", "-npp", "0", "-nps", "0", "--disable_tta"], env=env)
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{c}.nii.gz" for c in split)
    model = fold.parent
    run_nnunet(["nnUNetv2_evaluate_folder", str(gt), str(out), "-djfile", str(model / "dataset.json"), "-pfile",
                str(model / "plans.json")], env=env)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"} and len(summary["metric_per_case"]) == 2


def test_a_damaged_checkpoint_stops_resume_with_one_line(trained):
    """Last in this module: it damages the fold's checkpoint_final.pth, which --c would resume from."""
    import subprocess
    import sys

    env, name, root, fold, paused = trained
    final = fold / "checkpoint_final.pth"
    data = final.read_bytes()
    final.write_bytes(data[: len(data) // 2])
    cli = [sys.executable, "-m", "hypera_nnunet.cli", "train", "904", "3d_fullres", "0", "-tr", TRAINER, "-p", PLANS,
           "-device", "cpu", "--c"]
    r = subprocess.run(cli, env=env, capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith(f"hypera-nnunet: error: checkpoint {final} is damaged (")
    assert "; checkpoint_best.pth exists in" in r.stderr and "Traceback" not in r.stderr  # nnU-Net removed _latest
    from hypera_nnunet.data import nnunet_exe

    r = subprocess.run([nnunet_exe("nnUNetv2_train"), *cli[4:]], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"hypera-nnunet: error: checkpoint {final} is damaged (")
