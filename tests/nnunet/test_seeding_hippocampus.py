"""Seeded trainings (``HYPERA_SEED``) on the real Hippocampus subset: bit-identical repeats, and the
Shadow trainer trains exactly nnU-Net's weights (common random numbers for comparisons)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hypera_nnunet.data import run_nnunet

pytestmark = pytest.mark.nnunet
PLANS = "hyperaCPUPlans"
FOLD = "3"


def _train(hippo, trainer: str, seed: int, keep_as: str, tmp_path, **extra_env):
    env, name, root = hippo
    env = {**env, "HYPERA_SEED": str(seed), **extra_env}
    run_nnunet(["nnUNetv2_train", "904", "3d_fullres", FOLD, "-tr", trainer, "-p", PLANS, "-device", "cpu"], env=env)
    fold = root / "res" / name / f"{trainer}__{PLANS}__3d_fullres" / f"fold_{FOLD}"
    kept = tmp_path / keep_as
    shutil.copytree(fold, kept)
    shutil.rmtree(fold)  # the next run of this trainer starts from nothing
    ckpt = torch.load(kept / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    summary = json.loads((kept / "validation" / "summary.json").read_text())
    return kept, ckpt, summary


@pytest.fixture(scope="module")
def runs(hippo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seeded")
    store = tmp / "store"
    cfg = tmp / "counterfactual.yaml"
    cfg.write_text("reward:\n  counterfactual: true\n  terminal_weight: 1.0\n")
    # "a" writes its curve to an experience store, "b" does not; the Shadow run reads it for its reward and
    # records its transitions there: neither may change what nnU-Net trains
    return {
        "a": _train(hippo, "nnUNetTrainer_2epochs_5iters", 7, "a", tmp, HYPERA_STORE=str(store)),
        "b": _train(hippo, "nnUNetTrainer_2epochs_5iters", 7, "b", tmp),
        "shadow": _train(hippo, "HyperaTrainer_Shadow_2epochs_5iters", 7, "shadow", tmp, HYPERA_STORE=str(store),
                         HYPERA_CONFIG=str(cfg)),
        "other": _train(hippo, "nnUNetTrainer_2epochs_5iters", 8, "other", tmp),
        # the search's trainer at nnU-Net's defaults (no HYPERA_CONFIG): a search's held-out runs compare it with
        # nnUNetTrainer, so without a configuration it must train nnU-Net's weights
        "configured": _train(hippo, "nnUNetTrainerConfigured_2epochs_5iters", 7, "configured", tmp),
        "store": store,
    }


def _metrics(summary: dict) -> dict:
    """summary.json without its file paths (they name the trainer's folder)."""
    return {"mean": summary["mean"], "foreground_mean": summary["foreground_mean"],
            "per_case": [c["metrics"] for c in summary["metric_per_case"]]}


def _same_weights(x, y) -> bool:
    wx, wy = x["network_weights"], y["network_weights"]
    return wx.keys() == wy.keys() and all(torch.equal(wx[k], wy[k]) for k in wx)


def test_two_seeded_runs_are_bit_identical(runs):
    (_, ca, sa), (_, cb, sb) = runs["a"], runs["b"]
    assert _same_weights(ca, cb)
    assert ca["logging"]["train_losses"] == cb["logging"]["train_losses"]
    assert sa == sb  # every case's every metric in nnU-Net's summary.json


def test_shadow_trains_exactly_nnunets_weights_with_the_same_seed(runs):
    (_, ca, sa), (fold, cs, ss) = runs["a"], runs["shadow"]
    assert _same_weights(ca, cs)
    assert ca["logging"]["train_losses"] == cs["logging"]["train_losses"] and _metrics(sa) == _metrics(ss)
    lines = [json.loads(x) for x in (fold / "hypera" / "decisions.jsonl").read_text().splitlines()]
    assert [x["applied"] for x in lines] == [False, False]  # the agents decided, nothing was applied
    assert any(v != [0.0] for v in lines[0]["actions"].values())


def test_the_configured_trainer_at_nnunets_defaults_trains_nnunets_weights(runs):
    (_, ca, sa), (_, cc, sc) = runs["a"], runs["configured"]
    assert _same_weights(ca, cc)
    assert ca["logging"]["train_losses"] == cc["logging"]["train_losses"] and _metrics(sa) == _metrics(sc)


def test_another_seed_gives_another_run(runs):
    (_, ca, _), (_, co, _) = runs["a"], runs["other"]
    assert not _same_weights(ca, co)


def test_the_checkpoint_carries_the_generators(runs):
    from hypera_nnunet.nnunet.checkpoint import load_agent_state

    fold = runs["a"][0]
    extras = load_agent_state(fold / "checkpoint_final.pth", 2)
    assert extras["rng"]["seed"] == 7 and set(extras["rng"]) >= {"python", "numpy", "torch"}


def test_seeded_runs_with_an_augmentation_worker_are_bit_identical(hippo, tmp_path):
    """nnUNet_n_proc_DA=1 (a background augmentation process, as on a GPU machine): its seed is derived from
    (seed, fold, worker), so two runs still train the same weights; and they differ from the in-process runs."""
    env, name, root = hippo
    da = ({**env, "nnUNet_n_proc_DA": "1"}, name, root)
    _, c1, s1 = _train(da, "nnUNetTrainer_2epochs_5iters", 7, "da1", tmp_path)
    _, c2, s2 = _train(da, "nnUNetTrainer_2epochs_5iters", 7, "da2", tmp_path)
    assert _same_weights(c1, c2) and c1["logging"]["train_losses"] == c2["logging"]["train_losses"]
    assert _metrics(s1) == _metrics(s2)


def test_each_epoch_records_where_its_time_went(runs):
    """The baseline and the HYPERA trainer both write their epochs' parts (hypera_nnunet.nnunet.timing)."""
    from hypera_nnunet.nnunet.timing import PARTS

    for key in ("a", "shadow"):
        lines = [json.loads(x) for x in (runs[key][0] / "epochs.jsonl").read_text().splitlines()]
        assert [x["epoch"] for x in lines] == [0, 1]
        for x in lines:
            p = x["phases"]
            assert set(p) == {*PARTS, "rest", "wall"}
            assert min(p["train_data"], p["train_step"], p["val_data"], p["val_step"], p["plot"]) > 0
            assert p["rest"] >= 0 and abs(sum(p[k] for k in PARTS) + p["rest"] - p["wall"]) < 1e-3
        assert lines[0]["phases"]["checkpoint"] > 0  # the first EMA pseudo-Dice is always a new best


def test_the_store_holds_the_baseline_curve_and_the_agents_run(runs):
    """The seeded baseline's curve is the Shadow run's reward reference; its curve and outcome are stored."""
    from hypera_nnunet.store import ExperienceStore

    store = ExperienceStore(runs["store"])
    (base,) = store.baselines()
    ca, sa = runs["a"][1], runs["a"][2]
    assert base["ema_fg_dice"] == ca["logging"]["ema_fg_dice"] and base["identity"]["seed"] == 7
    assert base["final"]["foreground_mean"] == sa["foreground_mean"]["Dice"]
    assert base["identity"]["fold"] == int(FOLD) and base["identity"]["num_epochs"] == 2
    fold, _, ss = runs["shadow"]
    lines = [json.loads(x) for x in (fold / "hypera" / "decisions.jsonl").read_text().splitlines()]
    assert {x["reward_reference"] for x in lines} == {f"baseline {base['key']} (nnUNetTrainer_2epochs_5iters, "
                                                      f"fold {FOLD}, seed 7)"}
    (run,) = store.runs()
    # a Shadow run applies nothing, so its decisions are no transitions to learn from: the store gets none
    # (the transitions of a run that acts: tests/nnunet/test_trainer_hippocampus.py)
    assert run.transitions == {} and run.meta["epochs_done"] == 2
    assert run.meta["ema_fg_dice"] == runs["shadow"][1]["logging"]["ema_fg_dice"]
    assert run.outcome["foreground_mean"] == ss["foreground_mean"]["Dice"]
    assert run.meta["identity"] == {**base["identity"], "trainer": "HyperaTrainer_Shadow_2epochs_5iters"}
