"""Agents across runs: the counterfactual reward's exact values, the coordinator feeding the store, offline SAC
that learns a toy task from a store, warm-started buffers, and the ``agents`` CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypera_fakes import ALL_KNOBS, FakeKnobs, make_signals

from hypera_nnunet.cli import main
from hypera_nnunet.config import config_from_dict
from hypera_nnunet.control.coordinator import Coordinator
from hypera_nnunet.control.offline import fill_from_store, pooled, train_offline
from hypera_nnunet.control.rewards import RewardShaper
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.settings import SafeguardConfig
from hypera_nnunet.store import ExperienceStore, RunRecorder

IDENTITY = {"dataset": "D", "fingerprint": "f", "plans": "P", "plans_hash": "h", "configuration": "2d", "fold": 0,
            "seed": 3, "num_epochs": 4, "iterations": 5}


def _signals(epoch: int, ema: list[float], num_epochs: int = 4):
    s = make_signals(epoch, num_epochs)
    s.ema_dice = list(ema)
    return s


def test_the_counterfactual_reward_is_the_change_beyond_the_reference():
    ref = [0.1, 0.3, 0.4, 0.45]
    plain = RewardShaper(SafeguardConfig())
    cf = RewardShaper(SafeguardConfig(), reference=ref)
    term = RewardShaper(SafeguardConfig(), reference=ref, terminal_weight=2.0)
    ema = [0.1, 0.35, 0.42, 0.5]
    assert plain.raw_shared(_signals(1, ema[:2])) == pytest.approx(0.25)
    assert cf.raw_shared(_signals(0, ema[:1])) == 0.0
    assert cf.raw_shared(_signals(1, ema[:2])) == pytest.approx(0.25 - 0.2)
    assert cf.raw_shared(_signals(2, ema[:3])) == pytest.approx(0.07 - 0.1)
    assert cf.raw_shared(_signals(3, ema)) == pytest.approx(0.08 - 0.05)
    assert term.raw_shared(_signals(2, ema[:3])) == pytest.approx(-0.03)  # not the last epoch: no terminal term
    assert term.raw_shared(_signals(3, ema)) == pytest.approx(0.03 + 2.0 * (0.5 - 0.45))
    assert cf.raw_shared(_signals(4, [*ema, 0.6], num_epochs=6)) == pytest.approx(0.1)  # past the reference


def test_reward_variance_explained_by_epoch_drops_with_the_reference():
    """A toy of the shared reward's problem: the curve's shape (large early steps) dominates the plain change;
    the change beyond a seeded reference of the same shape keeps only what differs between the runs."""
    rng = np.random.default_rng(0)
    epochs = np.arange(30)
    shape = 0.8 * (1 - np.exp(-epochs / 6))

    def eta2(r):  # share of the variance explained by epoch index (one mean per epoch)
        r = np.asarray(r)
        return float(((r.mean(0) - r.mean()) ** 2).sum() * r.shape[0] / ((r - r.mean()) ** 2).sum())

    plain, cf = [], []
    for _ in range(40):
        noise = np.cumsum(rng.normal(0, 0.01, 30))
        run, ref = shape + noise, shape + np.cumsum(rng.normal(0, 0.01, 30))
        sp, sc = RewardShaper(SafeguardConfig()), RewardShaper(SafeguardConfig(), reference=list(ref))
        plain.append([sp.raw_shared(_signals(e, run[:e + 1], 30)) for e in epochs])
        cf.append([sc.raw_shared(_signals(e, run[:e + 1], 30)) for e in epochs])
    assert eta2(plain) > 0.5 and eta2(cf) < 0.1


def _drive(cfg: dict, recorder=None, reference=None, epochs: int = 4):
    config = config_from_dict(cfg)
    knobs = FakeKnobs(ALL_KNOBS)
    coord = Coordinator(config, knobs, num_epochs=epochs, seed=11, reference=reference,
                        reference_note="baseline test" if reference is not None else None, recorder=recorder)
    coord.on_train_start(0)
    for e in range(epochs):
        coord.on_epoch_start(make_signals(e, epochs))
        coord.on_epoch_end(_signals(e, [0.1 * (i + 1) for i in range(e + 1)], epochs))
    return coord


def test_the_coordinator_gives_the_store_each_transition(tmp_path):
    store = ExperienceStore(tmp_path / "s")
    rec = RunRecorder(store, "r", {"identity": IDENTITY})
    coord = _drive({"agents": {"learning_rate": {}, "loss": {}}}, recorder=rec, reference=[0.1, 0.2, 0.25, 0.3])
    rec.flush()
    run = store.read_run("r")
    for a in coord.agents:
        t = run.transitions[a.name]
        assert t.epoch.tolist() == [0, 1, 2, 3] and t.done.tolist() == [0, 0, 0, 1]
        assert np.array_equal(t.obs, a.buffer.obs[:4]) and np.array_equal(t.reward, a.buffer.rewards[:4, 0])
    assert coord.record["reward_reference"] == "baseline test"
    plain = _drive({"agents": {"learning_rate": {}, "loss": {}}})
    assert "reward_reference" not in plain.record  # without a reference the lines are as before


def _bandit_store(root, target=0.3, n_runs=4, per_run=64, seed=0):
    """Runs of a learning-rate agent on a one-step task: reward -(action - target)^2, whatever the state."""
    rng = np.random.default_rng(seed)
    store = ExperienceStore(root)
    for r in range(n_runs):
        rec = RunRecorder(store, f"run{r}", {"identity": {**IDENTITY, "seed": r},
                                             "agents": {"learning_rate": {"knobs": ["lr"], "obs_dim": 4}}})
        for i in range(per_run):
            obs = rng.normal(size=4).astype(np.float32)
            a = rng.uniform(-0.69, 0.69, size=1).astype(np.float32)
            rec.add("learning_rate", obs, a, -float((a[0] - target) ** 2) * 10, obs, True, epoch=i)
        rec.flush()
    return store


def test_offline_sac_learns_a_toy_task_from_the_store(tmp_path):
    torch.manual_seed(0)
    store = _bandit_store(tmp_path / "s")
    cfg = config_from_dict({"agents": {"learning_rate": {}}, "safeguards": {"trust": False}})
    policies, report = train_offline(store, cfg, updates=1500)
    assert report["learning_rate"]["transitions"] == 256 and report["learning_rate"]["runs"] == 4
    assert report["learning_rate"]["updates"] == 1504  # whole rounds of gradient_steps (8)
    from hypera_nnunet.agents import AGENTS

    agent = AGENTS["learning_rate"](cfg.agents["learning_rate"], 4, knobs=("lr",), learning=cfg.learning, seed=1)
    agent.load_policy(policies["agents"]["learning_rate"], "offline")
    acts = [float(agent.act(np.random.default_rng(i).normal(size=4).astype(np.float32), deterministic=True)[0])
            for i in range(8)]
    assert np.mean(acts) == pytest.approx(0.3, abs=0.08)
    fresh = AGENTS["learning_rate"](cfg.agents["learning_rate"], 4, knobs=("lr",), learning=cfg.learning, seed=1)
    assert abs(float(fresh.act(np.zeros(4, np.float32), deterministic=True)[0])) < 0.01  # nnU-Net's value before


def test_terminal_relabelling_spreads_the_outcome_over_the_run(tmp_path):
    store = _bandit_store(tmp_path / "s", n_runs=2, per_run=4)
    store.write_baseline({**IDENTITY, "seed": 0}, [0.1] * 4, {"foreground_mean": 0.70}, "b")
    rec = RunRecorder.resume(store, "run0", store.read_run("run0").meta, from_epoch=99)
    rec.finish({"foreground_mean": 0.78, "dice_per_class": {}})
    stored, relabelled = pooled(store, "learning_rate"), pooled(store, "learning_rate", "terminal")
    assert relabelled["relabelled"] == ["run0"]  # run1 has no outcome
    diff = relabelled["reward"] - stored["reward"]
    assert diff[:4] == pytest.approx([0.02] * 4) and diff[4:] == pytest.approx([0.0] * 4)


def test_warm_start_fills_the_buffers_and_knob_mismatches_are_refused(tmp_path):
    store = _bandit_store(tmp_path / "s", n_runs=2, per_run=5)
    cfg = config_from_dict({"agents": {"learning_rate": {}}})
    from hypera_nnunet.agents import AGENTS

    agent = AGENTS["learning_rate"](cfg.agents["learning_rate"], 4, knobs=("lr",), learning=cfg.learning)
    assert fill_from_store([agent], store) == {"learning_rate": 10} and len(agent.buffer) == 10
    other = AGENTS["learning_rate"](cfg.agents["learning_rate"], 5, knobs=("lr",), learning=cfg.learning)
    assert fill_from_store([other], store) == {} and len(other.buffer) == 0  # another state size: left alone
    bad = RunRecorder(store, "odd", {"agents": {"learning_rate": {"knobs": ["lr", "x"]}}})
    bad.add("learning_rate", np.zeros(4), np.zeros(2), 0.0, np.zeros(4), False, epoch=0)
    bad.flush()
    with pytest.raises(HyperaError, match=r"runs/run0: agent 'learning_rate' has knobs \['lr'\] and state size 4, "
                                          r"earlier runs \['lr', 'x'\]"):
        pooled(store, "learning_rate")


def test_agents_cli_info_and_train(tmp_path, capsys):
    store = _bandit_store(tmp_path / "s", n_runs=2, per_run=8)
    assert main(["agents", "info", "--store", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "2 run(s), 0 with an outcome, 0 baseline curve(s)" in out and "agent learning_rate: 16 transitions" in out
    assert "run run1: None fold 0 seed 1, 0 epoch(s), reward ?, final fg Dice -" in out
    assert main(["agents", "train", "--store", str(tmp_path / "s"), "--updates", "16"]) == 0
    policies = torch.load(tmp_path / "s" / "policies.pt", weights_only=False)
    assert list(policies["agents"]) == ["learning_rate"] and policies["offline"]["reward_mode"] == "stored"
    from hypera_nnunet.agents import AGENTS

    cfg = config_from_dict({"agents": {"learning_rate": {}}})
    AGENTS["learning_rate"](cfg.agents["learning_rate"], 4, knobs=("lr",)).load_policy(
        policies["agents"]["learning_rate"], "p")  # a run's agent of the same knobs and state size loads it
    assert main(["agents", "info", "--store", str(tmp_path / "nothing")]) == 2
    assert "not an experience store (no store.json)" in capsys.readouterr().err
    del store
