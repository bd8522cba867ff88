"""SAC core: squashed-Gaussian density, bounds, seeding, RNG isolation, checkpoints, the update, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Normal, TanhTransform, TransformedDistribution

from hypera_nnunet.rl import SAC, PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer, SACConfig
from hypera_nnunet.rl.policies import SquashedGaussianActor

SMALL = SACConfig(hidden=(32, 32))


def _random_batch(obs_dim: int, act_dim: int, n: int = 16, seed: int = 0, weights=None) -> ReplayBatch:
    rng = np.random.default_rng(seed)
    f = lambda *shape: torch.from_numpy(rng.normal(size=shape).astype(np.float32))  # noqa: E731
    w = torch.ones(n, 1) if weights is None else torch.as_tensor(weights, dtype=torch.float32).reshape(n, 1)
    dones = torch.from_numpy((rng.random((n, 1)) < 0.3).astype(np.float32))
    actions = torch.from_numpy(rng.uniform(-1, 1, (n, act_dim)).astype(np.float32))
    return ReplayBatch(f(n, obs_dim), actions, f(n, 1), f(n, obs_dim), dones, w, np.arange(n))


def _filled_buffer(obs_dim=3, act_dim=2, n=64, seed=0, cls=ReplayBuffer) -> ReplayBuffer:
    rng = np.random.default_rng(seed)
    buf = cls(256, obs_dim, act_dim, seed=seed)
    for _ in range(n):
        buf.add(rng.normal(size=obs_dim), rng.uniform(-1, 1, act_dim), rng.normal(), rng.normal(size=obs_dim),
                bool(rng.random() < 0.1))
    return buf


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


# --------------------------------------------------------------------------- the squashed Gaussian


def _actor_1d(low=-3.0, high=5.0, **kw) -> SquashedGaussianActor:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SquashedGaussianActor(2, 1, (16,), [low], [high], **kw)


def test_log_prob_matches_tanh_transformed_normal_and_hand_change_of_variables():
    low, high = -3.0, 5.0
    actor = _actor_1d(low, high)
    obs = torch.from_numpy(np.random.default_rng(1).normal(size=(256, 2)).astype(np.float32))
    with torch.no_grad():
        action, logp = actor(obs, torch.Generator().manual_seed(0))
        mu, log_std = actor._dist_params(obs)
    y = (action - (high + low) / 2) / ((high - low) / 2)  # the normalised action in (-1, 1)
    keep = (y.abs() < 0.99).reshape(-1)
    assert keep.sum() > 200 and logp.shape == (256, 1)

    # torch.distributions: Normal pushed through tanh.
    ref = TransformedDistribution(Normal(mu.double(), log_std.exp().double()), [TanhTransform()])
    expected_torch = ref.log_prob(y.double())
    np.testing.assert_allclose(logp[keep].numpy(), expected_torch[keep].numpy(), atol=2e-3, rtol=0)

    # By hand in float64: u = atanh(y); log N(u; mu, sigma) - log(1 - y^2).
    yn, m, s = y.double().numpy()[:, 0], mu.double().numpy()[:, 0], np.exp(log_std.double().numpy()[:, 0])
    u = np.arctanh(yn)
    hand = -0.5 * ((u - m) / s) ** 2 - np.log(s) - 0.5 * math.log(2 * math.pi) - np.log(1 - yn**2)
    np.testing.assert_allclose(logp.numpy()[:, 0][keep.numpy()], hand[keep.numpy()], atol=2e-3, rtol=0)


def test_log_prob_is_the_density_of_the_samples():
    """exp(log_prob) is the density of the sampled normalised actions: for a density p of the samples,
    E[1_A(y) / p(y)] = |A| for every interval A (Monte Carlo over 40 bins of [-1, 1])."""
    actor = _actor_1d(init_log_std=-0.3)
    n = 200_000
    obs = torch.tensor([[0.4, -0.7]]).repeat(n, 1)
    with torch.no_grad():
        action, logp = actor(obs, torch.Generator().manual_seed(3))
    y = ((action[:, 0] - 1.0) / 4.0).double().numpy()
    inv_density = np.exp(-logp[:, 0].double().numpy())
    edges = np.linspace(-1, 1, 41)
    which = np.clip(np.digitize(y, edges) - 1, 0, 39)
    counts = np.bincount(which, minlength=40)
    measured_width = np.bincount(which, weights=inv_density, minlength=40) / n
    full = counts > 2000
    assert full.sum() >= 15
    np.testing.assert_allclose(measured_width[full], np.full(full.sum(), edges[1] - edges[0]), rtol=0.05)
    # A wrong Jacobian (e.g. the Gaussian density of u, or a density in the scaled action space) fails this.
    gaussian_only = np.exp(-(logp[:, 0].double().numpy() + np.log(1 - y**2)))
    wrong = np.bincount(which, weights=gaussian_only, minlength=40) / n
    assert np.abs(wrong[full] / (edges[1] - edges[0]) - 1).max() > 0.2


def test_noise_scale_shrinks_samples_but_log_prob_is_the_full_policys():
    actor = _actor_1d(low=-1.0, high=1.0, init_log_std=0.0)
    obs = torch.zeros(4096, 2)
    with torch.no_grad():
        wide, _ = actor(obs, torch.Generator().manual_seed(0))
        narrow, logp = actor(obs, torch.Generator().manual_seed(0), noise_scale=0.25)
        mu, log_std = actor._dist_params(obs)
    assert narrow.std() < 0.5 * wide.std()
    ref = TransformedDistribution(Normal(mu.double(), log_std.exp().double()), [TanhTransform()])
    keep = narrow.abs() < 0.99
    np.testing.assert_allclose(logp[keep].numpy(), ref.log_prob(narrow.double())[keep].numpy(), atol=2e-3)


@pytest.mark.parametrize("magnitude", [1e3, 1e6, 1e9])
def test_actions_stay_within_bounds_for_huge_observations(magnitude):
    low, high = np.array([0.1, -3.0, 1e-4], np.float32), np.array([0.3, 7.0, 3e-4], np.float32)
    agent = SAC(4, 3, low, high, SMALL, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        obs = magnitude * rng.normal(size=4)
        for a in (agent.act(obs), agent.act(obs, deterministic=True), agent.act(obs, noise_scale=10.0)):
            assert a.dtype == np.float32 and a.shape == (3,)
            assert np.all(np.isfinite(a)) and np.all(a >= low) and np.all(a <= high), (obs, a)


def test_zero_init_mean_acts_at_the_centre_of_the_bounds():
    low, high = np.array([0.1, -3.0], np.float32), np.array([0.5, 7.0], np.float32)
    cfg = SACConfig(hidden=(32, 32), zero_init_mean=True)
    agent = SAC(5, 2, low, high, cfg, seed=4)
    centre = (high + low) / np.float32(2)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(agent.act(rng.normal(size=5) * 10, deterministic=True), centre)
    # New bounds move the action with them, without touching the weights.
    agent.set_bounds([1.0, 2.0], [3.0, 10.0])
    np.testing.assert_array_equal(agent.act(np.ones(5), deterministic=True), np.array([2.0, 6.0], np.float32))
    lo, hi = agent.bounds
    np.testing.assert_array_equal(lo, [1.0, 2.0])
    np.testing.assert_array_equal(hi, [3.0, 10.0])


def test_bounds_survive_a_checkpoint():
    low, high = np.array([0.1, -3.0], np.float32), np.array([0.3, 7.3], np.float32)
    a = SAC(2, 2, low, high, SMALL, seed=0)
    same = SAC(2, 2, low, high, SMALL, seed=1)
    same.load_state_dict(a.state_dict())
    for lo, hi in (a.bounds, same.bounds):
        np.testing.assert_array_equal(lo, low)
        np.testing.assert_array_equal(hi, high)
    # An agent built with other bounds takes the checkpoint's box (up to float32 rounding).
    other = SAC(2, 2, [-1, -1], [1, 1], SMALL, seed=1)
    other.load_state_dict(a.state_dict())
    lo, hi = other.bounds
    np.testing.assert_allclose(lo, low, rtol=1e-6)
    np.testing.assert_allclose(hi, high, rtol=1e-6)
    for _ in range(20):
        act = other.act(np.random.default_rng(0).normal(size=2) * 1e6)
        assert np.all(act >= lo) and np.all(act <= hi)


def test_set_bounds_rescales_actions_and_rejects_bad_bounds():
    agent = SAC(3, 1, [-1.0], [1.0], SMALL, seed=0)
    obs = np.array([0.2, -0.1, 0.5])
    a = agent.act(obs, deterministic=True)
    agent.set_bounds([10.0], [14.0])
    np.testing.assert_allclose(agent.act(obs, deterministic=True), 12.0 + 2.0 * a, rtol=1e-6)
    for lo, hi in (([1.0], [1.0]), ([2.0], [1.0]), ([0.0, 0.0], [1.0, 1.0])):
        with pytest.raises(ValueError):
            agent.set_bounds(lo, hi)


# --------------------------------------------------------------------------- seeding and RNG isolation


def _trajectory(seed: int, cfg: SACConfig = SMALL) -> tuple[list[np.ndarray], list[dict]]:
    agent = SAC(3, 2, [-1, -2], [1, 2], cfg, seed=seed)
    buf = _filled_buffer()
    rng = np.random.default_rng(0)
    actions, outs = [], []
    for _ in range(5):
        actions.append(agent.act(rng.normal(size=3)))
        outs.append(agent.update(buf.sample(32)))
    actions.append(agent.act(np.zeros(3), deterministic=True))
    return actions, outs


def test_same_seed_same_actions_and_updates_other_seed_differs():
    a1, o1 = _trajectory(7)
    torch.manual_seed(123)  # the global RNG must not matter
    torch.rand(10)
    a2, o2 = _trajectory(7)
    a3, o3 = _trajectory(8)
    for x, y in zip(a1, a2):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(o1, o2):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    assert not np.array_equal(a1[0], a3[0]) and o1[0]["critic_loss"] != o3[0]["critic_loss"]
    # The seed sets the initial weights too, not only the action noise.
    w7, w8 = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=7), SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=8)
    assert not torch.equal(w7.actor.mu.weight, w8.actor.mu.weight)
    assert not torch.equal(w7.critic.q1[0].weight, w8.critic.q1[0].weight)


def test_sac_never_moves_the_global_torch_rng():
    torch.manual_seed(2024)
    before = torch.get_rng_state().clone()
    agent = SAC(3, 2, [-1, -1], [1, 1], SACConfig(hidden=(32, 32), zero_init_mean=True, init_log_std=-1.0), seed=3)
    buf = _filled_buffer()
    for _ in range(3):
        agent.act(np.ones(3))
        agent.act(np.ones(3), deterministic=True, noise_scale=0.1)
        agent.update(buf.sample(16))
    other = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=5)
    other.load_state_dict(agent.state_dict())
    assert torch.equal(torch.get_rng_state(), before)


# --------------------------------------------------------------------------- checkpoints


def test_state_dict_round_trip_gives_identical_behaviour():
    buf = _filled_buffer()
    a = SAC(3, 2, [-1, -2], [1, 2], SMALL, seed=0)
    for _ in range(4):
        a.update(buf.sample(32))
    a.act(np.ones(3))
    b = SAC(3, 2, [-1, -2], [1, 2], SMALL, seed=99)
    b.load_state_dict(a.state_dict())
    obs = np.array([0.3, -1.0, 2.0])
    np.testing.assert_array_equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    np.testing.assert_array_equal(a.act(obs), b.act(obs))  # the action generator travels too
    batch = buf.sample(32)
    # Update a first, then b: they must not share optimiser state (Adam moments) through the load.
    out_a, out_b = a.update(batch), b.update(batch)
    assert out_a.keys() == out_b.keys()
    for k in out_a:
        np.testing.assert_array_equal(out_a[k], out_b[k])
    assert (a.n_updates, a.alpha, a.target_entropy) == (b.n_updates, b.alpha, b.target_entropy)
    for pa, pb in zip(a.actor.parameters(), b.actor.parameters()):
        assert torch.equal(pa, pb)


def test_one_state_loaded_into_two_agents_keeps_them_independent():
    buf = _filled_buffer()
    a = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0)
    for _ in range(3):
        a.update(buf.sample(32))
    state = a.state_dict()
    b, c = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=1), SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=2)
    b.load_state_dict(state)
    c.load_state_dict(state)
    batch = buf.sample(32)
    out_b = [b.update(batch) for _ in range(2)]
    out_c = [c.update(batch) for _ in range(2)]
    for ob, oc in zip(out_b, out_c):
        for k in ob:
            np.testing.assert_array_equal(ob[k], oc[k])


def test_state_dict_is_a_snapshot():
    buf = _filled_buffer()
    a = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0)
    a.update(buf.sample(32))
    snap = a.state_dict()
    saved = {k: v.clone() for k, v in snap["actor"].items()}
    obs = np.array([0.5, 0.5, -0.5])
    before = a.act(obs, deterministic=True)
    for _ in range(3):
        a.update(buf.sample(32))
    for k, v in saved.items():
        assert torch.equal(snap["actor"][k], v)
    b = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=1)
    b.load_state_dict(snap)
    np.testing.assert_array_equal(b.act(obs, deterministic=True), before)


def test_policy_only_load_keeps_own_optimiser_and_generator():
    buf = _filled_buffer()
    a = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0)
    for _ in range(3):
        a.update(buf.sample(32))
    b = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=1)
    gen_state = b.generator.get_state()
    b.load_state_dict(a.state_dict(), policy_only=True)
    obs = np.ones(3)
    np.testing.assert_array_equal(a.act(obs, deterministic=True), b.act(obs, deterministic=True))
    assert b.alpha == a.alpha and b.n_updates == 0
    assert torch.equal(b.generator.get_state(), gen_state) and len(b.actor_opt.state) == 0


# --------------------------------------------------------------------------- the update itself


def test_update_matches_a_hand_written_critic_step_and_polyak_average():
    """The critic step against a reference written here: target with min of target critics, the entropy
    bonus, no bootstrap through dones, IS weights, 0.5 * (mse1 + mse2); actor gradients must not reach the
    critics; the target critics move by Polyak averaging with tau."""
    cfg = SACConfig(hidden=(32, 32), gamma=0.9, tau=0.1, init_alpha=0.5)
    batch = _random_batch(3, 2, n=32, weights=np.linspace(0.2, 1.0, 32))
    agent = SAC(3, 2, [-1, -1], [1, 1], cfg, seed=0)
    ref = SAC(3, 2, [-1, -1], [1, 1], cfg, seed=0)
    target_before = _params(agent.critic_target)
    out = agent.update(batch)

    with torch.no_grad():
        next_a, next_logp = ref.actor(batch.next_observations, ref.generator)
        q1t, q2t = ref.critic_target(batch.next_observations, next_a)
        y = batch.rewards + 0.9 * (1 - batch.dones) * (torch.minimum(q1t, q2t) - 0.5 * next_logp)
    q1, q2 = ref.critic(batch.observations, batch.actions)
    loss = 0.5 * ((batch.weights * (q1 - y) ** 2).mean() + (batch.weights * (q2 - y) ** 2).mean())
    ref.critic_opt.zero_grad()
    loss.backward()
    ref.critic_opt.step()

    assert out["critic_loss"] == pytest.approx(loss.item(), rel=1e-5)
    np.testing.assert_allclose(out["td_errors"], (0.5 * (q1 + q2) - y).abs().detach().numpy()[:, 0], rtol=1e-5)
    for p_agent, p_ref in zip(agent.critic.parameters(), ref.critic.parameters()):
        torch.testing.assert_close(p_agent, p_ref, rtol=0, atol=1e-6)
        torch.testing.assert_close(p_agent.grad, p_ref.grad, rtol=1e-4, atol=1e-7)  # nothing from the actor loss
    for p_t, p_before, p_new in zip(agent.critic_target.parameters(), target_before, agent.critic.parameters()):
        torch.testing.assert_close(p_t, 0.9 * p_before + 0.1 * p_new, rtol=0, atol=1e-6)
    assert all(p.requires_grad for p in agent.critic.parameters())
    assert not any(p.requires_grad for p in agent.critic_target.parameters())


def test_importance_weights_scale_the_critic_loss():
    batch = _random_batch(3, 2, n=16)
    doubled = batch._replace(weights=2 * batch.weights)
    zero = batch._replace(weights=torch.zeros_like(batch.weights))
    out = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0).update(batch)
    out2 = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0).update(doubled)
    z = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0)
    critic_before = _params(z.critic)
    out0 = z.update(zero)
    assert out2["critic_loss"] == pytest.approx(2 * out["critic_loss"], rel=1e-6)
    np.testing.assert_allclose(out2["td_errors"], out["td_errors"], rtol=1e-6)  # TD errors are unweighted
    assert out0["critic_loss"] == 0.0
    for p, q in zip(z.critic.parameters(), critic_before):
        assert torch.equal(p, q)


def test_update_output_and_temperature():
    batch = _random_batch(3, 2, n=16)
    agent = SAC(3, 2, [-1, -1], [1, 1], SACConfig(hidden=(32, 32), init_log_std=0.0), seed=0)
    assert agent.target_entropy == -2.0 and agent.alpha == pytest.approx(1.0)
    out = agent.update(batch)
    assert set(out) == {"critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy", "td_errors"}
    assert out["td_errors"].shape == (16,) and np.all(out["td_errors"] >= 0) and agent.n_updates == 1
    # Entropy far above the target (-2): the temperature must fall, by one Adam step of lr.
    assert out["entropy"] > agent.target_entropy
    assert out["alpha"] == agent.alpha == pytest.approx(math.exp(-3e-4), rel=1e-5)

    fixed = SAC(3, 2, [-1, -1], [1, 1], SACConfig(hidden=(32, 32), init_alpha=0.2, autotune_alpha=False), seed=0)
    for _ in range(3):
        o = fixed.update(batch)
    assert o["alpha_loss"] == 0.0 and fixed.alpha == pytest.approx(0.2)

    low = SAC(3, 2, [-1, -1], [1, 1], SACConfig(hidden=(32, 32), init_log_std=0.0, target_entropy=10.0), seed=0)
    assert low.update(batch)["alpha"] > 1.0  # entropy below the target: the temperature rises


def test_prioritized_replay_integration():
    buf = _filled_buffer(cls=PrioritizedReplayBuffer, n=40)
    agent = SAC(3, 2, [-1, -1], [1, 1], SMALL, seed=0)
    probs_before = buf.probabilities().copy()
    np.testing.assert_array_equal(probs_before, np.full(40, 1 / 40))
    batch = buf.sample(16)
    out = agent.update(batch)
    buf.update_priorities(batch.indices, out["td_errors"])
    probs_after = buf.probabilities()
    assert not np.allclose(probs_after, probs_before)
    untouched = np.setdiff1d(np.arange(40), batch.indices)
    # Items not in the batch keep priority 1; sampled ones get |td| + eps (the last write for a repeat).
    np.testing.assert_array_equal(buf.priorities[untouched], 1.0)
    last = {i: td for i, td in zip(batch.indices, out["td_errors"])}
    np.testing.assert_allclose(buf.priorities[list(last)], np.array(list(last.values())) + buf.eps, rtol=1e-6)
    p = buf.priorities[:40] ** buf.alpha
    np.testing.assert_allclose(probs_after, p / p.sum(), rtol=1e-12)
    # The next batch's IS weights are non-uniform and feed the next update.
    nxt = buf.sample(16)
    assert nxt.weights.min() < 1.0 and nxt.weights.max() == 1.0
    assert np.isfinite(agent.update(nxt)["critic_loss"])


# --------------------------------------------------------------------------- learning


HORIZON, STEP = 10, 0.25


def _point_mass_return(policy) -> float:
    """Mean return over 21 fixed starts of a 1-D point mass: x' = clip(x + 0.25 a, -2, 2), reward -|x'|."""
    total = 0.0
    for x0 in np.linspace(-1, 1, 21):
        x = float(x0)
        for _ in range(HORIZON):
            a = float(np.clip(policy(np.array([x], np.float32)), -1, 1))
            x = float(np.clip(x + STEP * a, -2, 2))
            total -= abs(x)
    return total / 21


def test_sac_learns_the_point_mass():
    rng = np.random.default_rng(0)
    cfg = SACConfig(hidden=(64, 64), gamma=0.9, actor_lr=1e-3, critic_lr=1e-3, alpha_lr=1e-3)
    agent = SAC(1, 1, [-1.0], [1.0], cfg, seed=0)
    buf = ReplayBuffer(10_000, 1, 1, seed=0)
    x, t = rng.uniform(-1, 1), 0
    for _ in range(2000):
        obs = np.array([x], np.float32)
        a = agent.act(obs)
        x_next = float(np.clip(x + STEP * a[0], -2, 2))
        buf.add(obs, a, -abs(x_next), [x_next], False)  # the horizon is a time limit: bootstrap through it
        x, t = x_next, t + 1
        if t == HORIZON:
            x, t = rng.uniform(-1, 1), 0
        if len(buf) >= 64:
            agent.update(buf.sample(64))

    threshold = -1.5  # optimal is about -0.49
    learned = _point_mass_return(lambda o: agent.act(o, deterministic=True)[0])
    zero = _point_mass_return(lambda o: 0.0)
    rand_rng = np.random.default_rng(1)
    random = _point_mass_return(lambda o: rand_rng.uniform(-1, 1))
    untrained = SAC(1, 1, [-1.0], [1.0], cfg, seed=0)
    fresh = _point_mass_return(lambda o: untrained.act(o, deterministic=True)[0])
    assert max(zero, random, fresh) < threshold, (zero, random, fresh)
    assert learned > threshold, learned
