import math

import numpy as np
import pytest
from hypera_fakes import make_signals

from hypera_nnunet.agents import (
    AGENTS,
    AugmentationAgent,
    BatchSizeAgent,
    LearningRateAgent,
    LossFunctionAgent,
    OptimizationAgent,
    RegularizationAgent,
)
from hypera_nnunet.agents.base import Hook, learn_together
from hypera_nnunet.config import AgentSettings, LearningConfig
from hypera_nnunet.control.signals import N_BASE_FEATURES

OBS = N_BASE_FEATURES + 3


def test_registry_has_the_six_agents_with_their_hooks():
    assert set(AGENTS) == {"learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization"}
    assert RegularizationAgent.hook == Hook.AFTER_VALIDATION
    assert all(AGENTS[n].hook == Hook.EPOCH_START for n in AGENTS if n != "regularization")


@pytest.mark.parametrize("cls", list(AGENTS.values()))
def test_fresh_agent_acts_at_nnunet_value_and_stays_in_bounds(cls):
    agent = cls(cls.Settings(max_factor=2.0), OBS, seed=0)
    obs = np.zeros(OBS, np.float32)
    assert np.all(agent.act(obs, deterministic=True) == 0.0)
    wild = np.full(OBS, 1e6, np.float32)
    for _ in range(50):
        a = agent.act(wild, deterministic=False)
        assert np.all(np.abs(a) <= math.log(2.0) + 1e-6)


def test_trust_narrows_the_action_box():
    agent = LearningRateAgent(AgentSettings(max_factor=4.0), OBS, seed=0)
    agent.set_trust(0.25)
    lo, hi = agent.sac.bounds
    assert hi[0] == pytest.approx(0.25 * math.log(4.0)) and lo[0] == pytest.approx(-0.25 * math.log(4.0))
    for _ in range(50):
        assert abs(agent.act(np.ones(OBS, np.float32) * 50, deterministic=False)[0]) <= hi[0] + 1e-6


def test_max_factor_must_exceed_one():
    with pytest.raises(ValueError, match="max_factor"):
        LearningRateAgent(AgentSettings(max_factor=1.0), OBS)


def test_loss_agent_adds_deep_supervision_knob_only_when_asked():
    s = LossFunctionAgent.Settings
    assert LossFunctionAgent.wanted_knobs(s()) == ("ce_dice_balance",)
    assert LossFunctionAgent.wanted_knobs(s(deep_supervision=True)) == ("ce_dice_balance", "ds_decay")


def test_specialised_rewards_exact_values():
    s = make_signals(3)
    s.grad_norms = [1.0, 3.0]  # mean 2, std 1 -> cv 0.5
    s.pseudo_dice = [0.2, 0.5]
    s.train_losses = [1.0, 0.8]
    s.val_losses = [1.2, 1.3]
    s.epoch_times = [10.0, 12.0]
    mk = dict(obs_dim=OBS, seed=0)
    assert LearningRateAgent(AgentSettings(), **mk).specialised_reward(s) == pytest.approx(-0.5)
    assert LossFunctionAgent(LossFunctionAgent.Settings(), **mk).specialised_reward(s) == pytest.approx(0.3)
    assert BatchSizeAgent(BatchSizeAgent.Settings(), **mk).specialised_reward(s) == pytest.approx(-0.2)
    # gap 1.3-0.8=0.5 vs 1.2-1.0=0.2 -> widened by 0.3
    assert AugmentationAgent(AgentSettings(), **mk).specialised_reward(s) == pytest.approx(-0.3)
    assert RegularizationAgent(AgentSettings(), OBS, knobs=("weight_decay",)).specialised_reward(s) == \
        pytest.approx(-0.3)
    assert OptimizationAgent(AgentSettings(), **mk).specialised_reward(s) == pytest.approx(0.2)


def test_transitions_complete_and_learning_starts_after_threshold():
    agent = LearningRateAgent(AgentSettings(), OBS, learning=LearningConfig(learning_starts=3, gradient_steps=2,
                                                                             batch_size=4), seed=0)
    obs = np.zeros(OBS, np.float32)
    for i in range(3):
        assert agent.learn() == {}
        agent.remember(obs, np.array([0.1 * i], np.float32))
        agent.complete(1.0, obs)
    assert len(agent.buffer) == 3
    out = agent.learn()
    assert agent.sac.n_updates == 2 and "critic_loss" in out


def _six_agents(learning: LearningConfig) -> list:
    return [cls(cls.Settings(), OBS, learning=learning, seed=17 * i) for i, cls in enumerate(AGENTS.values())]


def _feed(agents, epoch: int) -> None:
    obs = np.sin(np.arange(OBS) + epoch).astype(np.float32)
    for a in agents:
        a.remember(obs, a.act(obs, deterministic=False))
        a.complete(float(np.cos(epoch + len(a.knobs))), obs)


def test_learning_together_matches_learning_alone():
    """The coordinator's batched learning gives each agent the updates it would make alone, including
    an agent whose buffer has not reached learning_starts (no update) and prioritized replay."""
    learning = LearningConfig(learning_starts=3, gradient_steps=3, batch_size=8)
    alone, together = _six_agents(learning), _six_agents(learning)
    obs = np.linspace(-1, 1, OBS).astype(np.float32)
    for epoch in range(6):
        _feed(alone if epoch >= 3 else alone[1:], epoch)  # the first agent starts three epochs late
        _feed(together if epoch >= 3 else together[1:], epoch)
        outs_alone = {a.name: out for a in alone if (out := a.learn())}
        outs_together = learn_together(together)
        assert set(outs_alone) == set(outs_together)
        for name, out in outs_alone.items():
            assert out["critic_loss"] == pytest.approx(outs_together[name]["critic_loss"], rel=1e-4, abs=1e-5)
    assert together[0].sac.n_updates == 1 * 3 and together[1].sac.n_updates == 4 * 3
    for a, b in zip(alone, together):
        assert a.sac.n_updates == b.sac.n_updates
        np.testing.assert_allclose(a.act(obs, deterministic=True), b.act(obs, deterministic=True), atol=1e-5)
    with pytest.raises(ValueError, match="names repeat"):
        learn_together([together[0], together[0]])


def test_agent_state_dict_round_trip():
    a = OptimizationAgent(AgentSettings(), OBS, seed=5)
    obs = np.linspace(-1, 1, OBS).astype(np.float32)
    for _ in range(6):
        a.remember(obs, a.act(obs, deterministic=False))
        a.complete(0.5, obs)
    a.learn()
    b = OptimizationAgent(AgentSettings(), OBS, seed=99)
    b.load_state_dict(a.state_dict())
    assert np.array_equal(a.act(obs, False), b.act(obs, False))
    with pytest.raises(ValueError, match="knobs"):
        LearningRateAgent(AgentSettings(), OBS).load_state_dict(a.state_dict())
