"""update_together: the same SAC steps as updating each learner alone, in one batched computation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from hypera_nnunet.rl import SAC, PrioritizedReplayBuffer, ReplayBuffer, SACConfig
from hypera_nnunet.rl.batched import update_together

OBS = 7
# HYPERA's agents' settings: zero-mean start, narrow initial std, fixed lr for all three optimizers
CFG = SACConfig(hidden=(32, 32), gamma=0.9, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3, init_alpha=0.1,
                zero_init_mean=True, init_log_std=-1.2)


def _learner(seed: int, act_dim: int, cfg: SACConfig = CFG, prioritized: bool = True):
    sac = SAC(OBS, act_dim, [-0.5] * act_dim, [0.5] * act_dim, cfg, seed=seed)
    sac.target_entropy = -0.7 * act_dim  # as the coordinator's annealing sets it
    buf = (PrioritizedReplayBuffer if prioritized else ReplayBuffer)(256, OBS, act_dim, seed=seed + 1)
    rng = np.random.default_rng(seed)
    for _ in range(40):
        buf.add(rng.normal(size=OBS), rng.uniform(-0.5, 0.5, act_dim), rng.normal(), rng.normal(size=OBS),
                bool(rng.random() < 0.1))
    return sac, buf


def _run(pairs, steps: int, together: bool) -> list[list[dict]]:
    history = []
    for _ in range(steps):
        batches = [buf.sample(16) for _, buf in pairs]
        sacs = [sac for sac, _ in pairs]
        outs = update_together(sacs, batches) if together else [s.update(b) for s, b in zip(sacs, batches)]
        for (_, buf), b, o in zip(pairs, batches, outs):
            if isinstance(buf, PrioritizedReplayBuffer):
                buf.update_priorities(b.indices, o["td_errors"])
        history.append(outs)
    return history


def _tensors(sac: SAC) -> list[torch.Tensor]:
    return [*sac._actor_params, *sac._critic_params, *sac._target_params, sac.log_alpha]


def _assert_same_learners(a: list, b: list, atol: float) -> None:
    for (s1, b1), (s2, b2) in zip(a, b):
        for x, y in zip(_tensors(s1), _tensors(s2)):
            torch.testing.assert_close(x, y, atol=atol, rtol=0)
        assert s1.n_updates == s2.n_updates
        assert torch.equal(s1.generator.get_state(), s2.generator.get_state())
        assert b1.rng.bit_generator.state == b2.rng.bit_generator.state
        for o1, o2 in ((s1.critic_opt, s2.critic_opt), (s1.actor_opt, s2.actor_opt), (s1.alpha_opt, s2.alpha_opt)):
            for st1, st2 in zip(o1.state.values(), o2.state.values()):
                assert float(st1["step"]) == float(st2["step"])
                torch.testing.assert_close(st1["exp_avg_sq"], st2["exp_avg_sq"], atol=atol, rtol=1e-4)


def test_matches_sequential_updates_for_hypera_mix_of_action_sizes():
    """Three one-knob and three two-knob learners (HYPERA's six agents), prioritized replay, from the
    first update (optimizer state created) on: same weights, optimizer moments, losses, TD errors and
    random streams as six plain updates. The two-knob/one-knob mix exercises the zero padding."""
    alone = [_learner(17 * i, act) for i, act in enumerate((1, 1, 1, 2, 2, 2))]
    together = copy.deepcopy(alone)
    h1, h2 = _run(alone, 25, together=False), _run(together, 25, together=True)
    _assert_same_learners(alone, together, atol=2e-5)
    for outs1, outs2 in zip(h1, h2):
        for o1, o2 in zip(outs1, outs2):
            assert set(o1) == set(o2)
            for k in ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy"):
                assert o1[k] == pytest.approx(o2[k], rel=1e-4, abs=1e-5), k
            np.testing.assert_allclose(o1["td_errors"], o2["td_errors"], atol=1e-4)
    obs = np.linspace(-1, 1, OBS)
    for (s1, _), (s2, _) in zip(alone, together):
        np.testing.assert_allclose(s1.act(obs), s2.act(obs), atol=1e-5)


def test_groups_by_architecture_and_settings():
    """Learners that cannot share a step (other widths, other gamma, no temperature tuning, torch's
    for-loop Adam) are grouped apart or stepped on their own, and still match their plain updates."""
    wide = SACConfig(**{**CFG.__dict__, "hidden": (16,)})
    other_gamma = SACConfig(**{**CFG.__dict__, "gamma": 0.5})
    fixed_alpha = SACConfig(**{**CFG.__dict__, "autotune_alpha": False})
    alone = [_learner(1, 2), _learner(2, 2, wide), _learner(3, 1, wide), _learner(4, 1, other_gamma),
             _learner(5, 2, fixed_alpha), _learner(6, 1, fixed_alpha), _learner(7, 2, prioritized=False)]
    for sac in (alone[-1][0],):
        sac.actor_opt = torch.optim.Adam(sac.actor.parameters(), lr=1e-3)  # for-loop Adam: its own step
    together = copy.deepcopy(alone)
    _run(alone, 6, together=False)
    _run(together, 6, together=True)
    _assert_same_learners(alone, together, atol=2e-5)


def test_a_lone_learner_takes_the_plain_update_exactly():
    a = _learner(3, 2)
    b = copy.deepcopy(a)
    _run([a], 3, together=False)
    _run([b], 3, together=True)
    _assert_same_learners([a], [b], atol=0.0)


def test_state_round_trip_after_batched_updates():
    """A learner restored from a state saved after batched updates continues exactly like the original."""
    pairs = [_learner(11, 1), _learner(12, 2)]
    _run(pairs, 4, together=True)
    restored = []
    for sac, buf in pairs:
        s2, b2 = _learner(99, sac.act_dim)
        s2.load_state_dict(sac.state_dict())
        b2.load_state_dict(buf.state_dict())
        restored.append((s2, b2))
    _run(pairs, 3, together=True)
    _run(restored, 3, together=True)
    _assert_same_learners(pairs, restored, atol=0.0)


def test_bad_calls_say_what_is_wrong():
    s, buf = _learner(0, 1)
    with pytest.raises(ValueError, match="1 learners but 2 batches"):
        update_together([s], [buf.sample(4), buf.sample(4)])
    with pytest.raises(ValueError, match="appears twice"):
        update_together([s, s], [buf.sample(4), buf.sample(4)])
