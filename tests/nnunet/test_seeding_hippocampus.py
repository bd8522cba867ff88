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


def _train(hippo, trainer: str, seed: int, keep_as: str, tmp_path):
    env, name, root = hippo
    env = {**env, "HYPERA_SEED": str(seed)}
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
    return {
        "a": _train(hippo, "nnUNetTrainer_2epochs_5iters", 7, "a", tmp),
        "b": _train(hippo, "nnUNetTrainer_2epochs_5iters", 7, "b", tmp),
        "shadow": _train(hippo, "HyperaTrainer_Shadow_2epochs_5iters", 7, "shadow", tmp),
        "other": _train(hippo, "nnUNetTrainer_2epochs_5iters", 8, "other", tmp),
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
