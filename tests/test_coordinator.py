import json
import math

import numpy as np
import pytest
import torch
from hypera_fakes import FakeKnobs, make_signals

from hypera_nnunet.agents import Proposal
from hypera_nnunet.config import ExplorationConfig, HyperaConfig, SafeguardConfig, config_from_dict
from hypera_nnunet.control.coordinator import Coordinator
from hypera_nnunet.control.decision_log import DecisionLog, fingerprint
from hypera_nnunet.control.safeguards import RollbackGuard
from hypera_nnunet.control.schedule import exploration_phase
from hypera_nnunet.control.strategies import resolve

SIX = {a: {} for a in ("learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization")}


def P(value, confidence=1.0, priority=0):
    return Proposal("lr", value, confidence, priority, 0.25)


# ---- conflict strategies, exact values on hand-made cases ----------------------------------------
def test_single_proposal_wins_under_every_strategy():
    for s in ("weighted_average", "priority", "consensus"):
        assert resolve([P(0.3)], s) == 0.3


def test_weighted_average_is_confidence_weighted():
    assert resolve([P(0.2, 1.0), P(-0.1, 0.5)], "weighted_average") == pytest.approx((0.2 - 0.05) / 1.5)
    assert resolve([P(0.2, 0.0), P(-0.1, 0.0)], "weighted_average") == pytest.approx(0.05)


def test_priority_takes_the_highest_and_the_first_on_ties():
    assert resolve([P(0.2, priority=1), P(-0.1, priority=5), P(0.4, priority=2)], "priority") == -0.1
    assert resolve([P(0.2, priority=3), P(-0.1, priority=3)], "priority") == 0.2


def test_consensus_takes_the_smallest_common_move_or_none():
    assert resolve([P(0.2), P(0.05), P(0.3)], "consensus") == 0.05
    assert resolve([P(-0.2), P(-0.05)], "consensus") == -0.05
    assert resolve([P(0.2), P(-0.05)], "consensus") == 0.0
    assert resolve([P(0.0), P(0.1)], "consensus") == 0.0


def test_exploration_schedule():
    cfg = ExplorationConfig(explore_until=0.3, exploit_until=0.8, exploit_noise=0.5)
    assert exploration_phase(0.0, cfg) == ("explore", 1.0)
    assert exploration_phase(0.5, cfg) == ("exploit", 0.5)
    assert exploration_phase(0.8, cfg) == ("fine_tune", 0.0)


# ---- running the coordinator on fake knobs -------------------------------------------------------
def run(coord, epochs, start=0, num_epochs=20, dice_fn=None):
    actions = []
    for e in range(start, start + epochs):
        d = 0.5 if dice_fn is None else dice_fn(e, coord)
        coord.on_epoch_start(make_signals(e, num_epochs, dice=d))
        coord.on_epoch_end(make_signals(e, num_epochs, dice=d))
        actions.append(json.dumps(coord.record["actions"], sort_keys=True))
    return actions


def test_fresh_agents_start_exactly_at_nnunet_behaviour():
    # deterministic (frozen-like) action of a fresh policy is the centre of the box: multiplier 1
    cfg = HyperaConfig(agents=SIX, exploration=ExplorationConfig(explore_until=0.0, exploit_until=0.0))
    knobs = FakeKnobs()
    c = Coordinator(cfg, knobs, num_epochs=20)
    c.on_epoch_start(make_signals(0))
    assert all(v == [0.0] for v in c.record["actions"].values() if len(v) == 1)
    assert all(x == 0.0 for vals in knobs.applied.values() for x in vals)


def test_same_seed_same_actions_other_seed_other_actions():
    def actions(seed):
        c = Coordinator(HyperaConfig(agents=SIX, seed=seed), FakeKnobs(), num_epochs=20)
        return run(c, 8)

    assert actions(1) == actions(1)
    assert actions(1) != actions(2)


def test_save_load_round_trip_gives_identical_actions():
    cfg = HyperaConfig(agents=SIX, seed=3)
    a = Coordinator(cfg, FakeKnobs(), num_epochs=20)
    run(a, 6)  # past learning_starts: buffers, optimizers and generators all hold state
    state = a.state_dict()
    b = Coordinator(cfg, FakeKnobs(), num_epochs=20)
    b.load_state_dict(state)
    assert run(a, 4, start=6) == run(b, 4, start=6)


def test_fingerprint_start_is_the_state_at_epoch_start():
    """fingerprint_start reuses the last fingerprint_end; it must equal a fresh hash of the state, and a
    loaded state must be hashed again (the resume check in the nnU-Net test rests on this)."""


    cfg = HyperaConfig(agents=SIX, seed=4)
    c = Coordinator(cfg, FakeKnobs(), num_epochs=20)
    for e in range(6):  # through learning_starts, so the SAC states move
        before = fingerprint(c.state_dict(copy_tensors=False))
        c.on_epoch_start(make_signals(e))
        assert c.record["fingerprint_start"] == before
        c.on_epoch_end(make_signals(e, dice=0.5 + 0.01 * e))
        assert c.record["fingerprint_end"] == fingerprint(c.state_dict(copy_tensors=False)) != before
    other = Coordinator(cfg, FakeKnobs(), num_epochs=20)
    run(other, 3)
    c.load_state_dict(other.state_dict())
    c.on_epoch_start(make_signals(3))
    assert c.record["fingerprint_start"] == fingerprint(other.state_dict(copy_tensors=False))


def test_actions_stay_in_bounds_and_rate_limits_under_adversarial_states():
    cfg = config_from_dict({"agents": {"learning_rate": {"max_factor": 2.0, "max_step": 0.1}, "loss": {}},
                            "safeguards": {"trust": False, "rollback": False}})
    knobs = FakeKnobs(("lr", "ce_dice_balance"))
    c = Coordinator(cfg, knobs, num_epochs=50)
    rng = np.random.default_rng(0)
    for e in range(40):
        s = make_signals(e, 50)
        s.train_losses = list(rng.normal(0, 1e6, size=e + 1))
        s.val_losses = list(rng.normal(0, 1e6, size=e + 1))
        s.ema_dice = list(rng.uniform(-1e3, 1e3, size=e + 1))
        s.grad_norms = [1e30, 1e-30]
        s.weight_norm = 1e30
        c.on_epoch_start(s)
        c.on_epoch_end(s)
    lr = knobs.applied["lr"]
    assert max(abs(x) for x in lr) <= math.log(2.0) + 1e-6
    assert max(abs(b - a) for a, b in zip(lr, lr[1:])) <= 0.1 + 1e-6


def test_shadow_mode_records_actions_but_applies_nnunet_values():
    cfg = HyperaConfig(agents=SIX, shadow=True, seed=1)
    knobs = FakeKnobs()
    c = Coordinator(cfg, knobs, num_epochs=20)
    run(c, 5)
    assert all(x == 0.0 for vals in knobs.applied.values() for x in vals)
    assert any(abs(v[0]) > 0 for v in c.record["actions"].values())
    assert all(len(a.buffer) == 0 for a in c.agents)  # shadow learns nothing
    assert c.record["applied"] is False


def test_agents_skip_knobs_the_trainer_lacks():
    c = Coordinator(HyperaConfig(agents={"regularization": {}, "learning_rate": {}}), FakeKnobs(("lr",)), 10)
    assert [a.name for a in c.agents] == ["learning_rate"]
    assert "regularization" in c.skipped


def test_rollback_on_injected_nan_restores_weights_and_penalises():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    guard = RollbackGuard({"network": net, "optimizer": opt}, SafeguardConfig())
    knobs = FakeKnobs(("lr",))
    c = Coordinator(HyperaConfig(agents={"learning_rate": {}}, seed=0), knobs, 20, guard=guard)
    c.on_train_start()
    c.on_epoch_start(make_signals(0))
    assert c.on_epoch_end(make_signals(0)) is False  # good epoch: snapshot taken
    good = {k: v.clone() for k, v in net.state_dict().items()}
    good_lr = c.log_m["lr"]

    c.on_epoch_start(make_signals(1))
    with torch.no_grad():  # the epoch's training blew up
        net.weight.fill_(float("nan"))
    bad = make_signals(1)
    bad.train_losses[-1] = float("nan")
    assert c.on_epoch_end(bad) is True
    for k, v in net.state_dict().items():
        assert torch.equal(v, good[k])
    assert c.record["rollback"].startswith("non-finite")
    assert c.record["rewards"]["learning_rate"] == SafeguardConfig().rollback_penalty
    assert knobs.current["lr"] == good_lr
    assert c.agents[0].trust == SafeguardConfig().trust_init / 2


def test_rollback_on_pseudo_dice_drop_and_agents_switch_off_after_repeats():
    net = torch.nn.Linear(2, 1)
    guard = RollbackGuard({"network": net}, SafeguardConfig(rollback_dice_drop=0.1, max_consecutive_rollbacks=2))
    c = Coordinator(HyperaConfig(agents={"learning_rate": {}},
                                 safeguards=SafeguardConfig(rollback_dice_drop=0.1, max_consecutive_rollbacks=2)),
                    FakeKnobs(("lr",)), 20, guard=guard)
    c.on_train_start()
    for e, d in enumerate([0.6, 0.45, 0.55, 0.3, 0.2]):
        c.on_epoch_start(make_signals(e, dice=d))
        c.on_epoch_end(make_signals(e, dice=d))
    assert guard.rollbacks == 3 and c.disabled
    assert c.knobs.current["lr"] == 0.0


def test_decision_log_one_line_per_epoch_and_truncate_on_resume(tmp_path):
    log = DecisionLog(tmp_path / "hypera" / "decisions.jsonl")
    c = Coordinator(HyperaConfig(agents=SIX), FakeKnobs(), 10, log=log)
    run(c, 4)
    lines = [json.loads(x) for x in log.path.read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2, 3]
    for x in lines:
        assert {"values", "actions", "rewards", "state", "overhead_s", "multipliers"} <= set(x)
    with open(log.path, "a") as f:
        f.write('{"epoch": 4, "torn')
    log.truncate_from(2)
    assert [json.loads(x)["epoch"] for x in log.path.read_text().splitlines()] == [0, 1]


def test_lr_agent_learns_a_toy_task():
    """Pseudo-Dice improves fastest at an LR multiplier of exp(0.3); the agent must find it."""
    cfg = config_from_dict({
        "agents": {"learning_rate": {"max_factor": 2.0, "max_step": 1.0, "share": 1.0}}, "seed": 0,
        "safeguards": {"trust": False, "rollback": False, "prior_weight": 0.0},
        "exploration": {"explore_until": 1.0, "exploit_until": 1.0},
        "learning": {"gamma": 0.0, "gradient_steps": 8, "learning_starts": 8, "lr": 3e-3},
    })
    knobs = FakeKnobs(("lr",))
    c = Coordinator(cfg, knobs, num_epochs=10_000)
    ema = [0.5]
    rng = np.random.default_rng(0)
    for e in range(300):
        s = make_signals(e, 10_000)
        s.ema_dice = list(ema)
        c.on_epoch_start(s)
        x = knobs.current["lr"]
        ema.append(ema[-1] + 0.01 - 0.1 * (x - 0.3) ** 2 + rng.normal(0, 0.001))
        s.ema_dice = list(ema)
        c.on_epoch_end(s)
    mean_action = float(c.agents[0].sac.act(s.features(c.log_m, c.knob_order), deterministic=True)[0])
    assert 0.15 < mean_action < 0.45


def test_transfer_warm_start_and_frozen():
    src = Coordinator(HyperaConfig(agents={"learning_rate": {}, "loss": {}}, seed=4), FakeKnobs(), 20)
    run(src, 8)  # trained a little: the policy mean has moved away from zero
    policies = src.policies()
    obs = make_signals(9).features(src.log_m, src.knob_order)
    expected = {a.name: a.sac.act(obs, deterministic=True) for a in src.agents}

    frozen_cfg = config_from_dict({"agents": {"learning_rate": {}, "loss": {}}, "seed": 11,
                                   "transfer": {"source": "x/policies.pt", "mode": "frozen"}})
    frozen = Coordinator(frozen_cfg, FakeKnobs(), 20)
    assert sorted(frozen.load_policies(policies, "x")) == ["learning_rate", "loss"]
    for a in frozen.agents:
        assert np.array_equal(a.sac.act(obs, deterministic=True), expected[a.name])
    run(frozen, 6)
    assert all(a.sac.n_updates == 0 and len(a.buffer) == 0 for a in frozen.agents)  # frozen: no learning
    assert frozen.record["phase"] == "explore" and frozen.learning_enabled is False

    warm = Coordinator(HyperaConfig(agents={"learning_rate": {}}, seed=11), FakeKnobs(), 20)
    assert warm.load_policies(policies, "x") == ["learning_rate"]
    run(warm, 6)
    assert warm.agents[0].sac.n_updates > 0


def test_frozen_agents_act_deterministically():
    cfg = config_from_dict({"agents": {"learning_rate": {}}, "transfer": {"source": "p", "mode": "frozen"}})
    c1, c2 = Coordinator(cfg, FakeKnobs(), 20), Coordinator(cfg.replace(seed=5), FakeKnobs(), 20)
    assert run(c1, 3) == run(c2, 3)  # no sampling noise: the seed does not matter


def test_iteration_level_lr_decisions_share_the_epoch_reward():
    cfg = config_from_dict({"agents": {"learning_rate": {"every_n_iterations": 2}, "loss": {}}, "seed": 2})
    knobs = FakeKnobs(("lr", "ce_dice_balance"))
    c = Coordinator(cfg, knobs, 20)
    assert [a.name for a in c.iteration_agents(2)] == ["learning_rate"] and c.iteration_agents(3) == []
    c.on_epoch_start(make_signals(0))
    for it in range(1, 6):
        s = make_signals(0)
        s.grad_norms = [1.0 + it] * it
        c.on_iteration(it, s)
    assert len(knobs.applied["lr"]) == 3  # epoch start, iterations 2 and 4
    assert len(c.record["iteration_actions"]["learning_rate"]) == 2 and "loss" not in c.record["iteration_actions"]
    c.on_epoch_end(make_signals(0))
    lr_agent, loss_agent = c.agents
    assert len(lr_agent.buffer) == 3 and len(loss_agent.buffer) == 1
    b = lr_agent.buffer
    assert np.array_equal(b.next_obs[0], b.obs[1]) and np.array_equal(b.next_obs[1], b.obs[2])
    assert b.rewards[0, 0] == b.rewards[1, 0] == b.rewards[2, 0] == c.record["rewards"]["learning_rate"]
    assert b.dones[:3, 0].tolist() == [0.0, 0.0, 0.0]
