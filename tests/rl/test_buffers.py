"""Replay buffers: exact sampling, priorities, IS weights, circular overwrite, state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hypera_nnunet.rl import PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer


def _fill(buf: ReplayBuffer, n: int, start: int = 0) -> None:
    """Item k has obs [k, -k], action [k/10], reward k, next_obs [k+1, -(k+1)], done on multiples of 3."""
    for k in range(start, start + n):
        buf.add([k, -k], [k / 10], float(k), [k + 1, -(k + 1)], k % 3 == 0)


def test_uniform_indices_are_the_seeded_generators_draws():
    buf = ReplayBuffer(10, 2, 1, seed=7)
    _fill(buf, 6)
    batch = buf.sample(5)
    expected = np.random.default_rng(7).integers(0, 6, size=5)
    np.testing.assert_array_equal(batch.indices, expected)
    # The batch holds exactly the stored rows for those indices.
    k = expected.astype(np.float32)
    np.testing.assert_array_equal(batch.observations.numpy(), np.stack([k, -k], 1))
    np.testing.assert_array_equal(batch.actions.numpy(), (k / 10)[:, None].astype(np.float32))
    np.testing.assert_array_equal(batch.rewards.numpy(), k[:, None])
    np.testing.assert_array_equal(batch.next_observations.numpy(), np.stack([k + 1, -(k + 1)], 1))
    np.testing.assert_array_equal(batch.dones.numpy(), (expected % 3 == 0).astype(np.float32)[:, None])
    np.testing.assert_array_equal(batch.weights.numpy(), np.ones((5, 1), np.float32))


def test_same_seed_same_batches_and_other_seed_differs():
    a, b, c = ReplayBuffer(50, 2, 1, seed=3), ReplayBuffer(50, 2, 1, seed=3), ReplayBuffer(50, 2, 1, seed=4)
    for buf in (a, b, c):
        _fill(buf, 40)
    for _ in range(3):
        np.testing.assert_array_equal(a.sample(16).indices, b.sample(16).indices)
    assert not np.array_equal(ReplayBuffer(50, 2, 1, seed=3).rng.integers(0, 40, 16), c.sample(16).indices)


def test_batch_types_and_shapes():
    buf = ReplayBuffer(8, 3, 2)
    buf.add(np.ones(3), np.zeros(2), 1.5, np.ones(3), True)
    batch = buf.sample(4)
    assert isinstance(batch, ReplayBatch)
    for t, shape in zip(batch[:6], [(4, 3), (4, 2), (4, 1), (4, 3), (4, 1), (4, 1)]):
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and tuple(t.shape) == shape
    assert isinstance(batch.indices, np.ndarray) and batch.indices.shape == (4,)
    assert float(batch.dones[0, 0]) == 1.0 and float(batch.rewards[0, 0]) == 1.5


def test_circular_overwrite():
    buf = ReplayBuffer(3, 2, 1)
    positions = [buf.add([k, -k], [0.0], float(k), [k, k], False) for k in range(5)]
    assert positions == [0, 1, 2, 0, 1]
    assert len(buf) == 3 and buf.pos == 2
    # Items 3 and 4 overwrote slots 0 and 1; slot 2 still holds item 2.
    np.testing.assert_array_equal(buf.rewards[:, 0], [3.0, 4.0, 2.0])
    np.testing.assert_array_equal(buf.obs[:, 0], [3.0, 4.0, 2.0])
    drawn = np.concatenate([buf.sample(64).indices for _ in range(5)])
    assert drawn.min() >= 0 and drawn.max() <= 2 and set(drawn.tolist()) == {0, 1, 2}


def test_invalid_capacity_and_empty_sample():
    with pytest.raises(ValueError):
        ReplayBuffer(0, 2, 1)
    with pytest.raises(ValueError):
        ReplayBuffer(4, 2, 1).sample(2)


@pytest.mark.parametrize("cls", [ReplayBuffer, PrioritizedReplayBuffer])
def test_state_dict_round_trip_includes_rng(cls):
    a = cls(20, 2, 1, seed=11)
    _fill(a, 25)  # wraps around
    if isinstance(a, PrioritizedReplayBuffer):
        a.update_priorities(np.arange(20), np.linspace(0.1, 3.0, 20))
    a.sample(8)  # advance the generator first
    state = a.state_dict()
    b = cls(20, 2, 1, seed=999)
    b.load_state_dict(state)
    assert (len(b), b.pos) == (len(a), a.pos)
    for _ in range(3):
        ba, bb = a.sample(8), b.sample(8)
        np.testing.assert_array_equal(ba.indices, bb.indices)
        for ta, tb in zip(ba[:6], bb[:6]):
            assert torch.equal(ta, tb)
    # The saved state is a snapshot: adding to the source afterwards does not change it.
    before = state["rewards"].copy()
    _fill(a, 5, start=100)
    np.testing.assert_array_equal(state["rewards"], before)


def test_load_rejects_other_shapes():
    state = ReplayBuffer(10, 2, 1).state_dict()
    with pytest.raises(ValueError):
        ReplayBuffer(11, 2, 1).load_state_dict(state)
    with pytest.raises(ValueError):
        ReplayBuffer(10, 3, 1).load_state_dict(state)


def test_prioritized_probabilities_and_weights_exact():
    # priorities 1, 4, 9, 16 with alpha 0.5 -> p^alpha = 1, 2, 3, 4 -> P = 0.1, 0.2, 0.3, 0.4.
    buf = PrioritizedReplayBuffer(4, 2, 1, seed=5, alpha=0.5, beta=1.0, eps=0.0)
    _fill(buf, 4)
    np.testing.assert_array_equal(buf.probabilities(), np.full(4, 0.25))  # new items share the max priority
    buf.update_priorities(np.array([0, 1, 2, 3]), np.array([1.0, -4.0, 9.0, -16.0]))  # |td| is used
    np.testing.assert_array_equal(buf.priorities, [1.0, 4.0, 9.0, 16.0])
    np.testing.assert_allclose(buf.probabilities(), [0.1, 0.2, 0.3, 0.4], rtol=1e-15, atol=0)
    assert buf.max_priority == 16.0

    batch = buf.sample(6)
    expected_idx = np.random.default_rng(5).choice(4, size=6, p=buf.probabilities())
    np.testing.assert_array_equal(batch.indices, expected_idx)
    # beta = 1: w = 1 / (N P) = 2.5, 1.25, 0.8333, 0.625 for items 0..3, divided by the batch maximum.
    raw = np.array([2.5, 1.25, 1 / 1.2, 0.625])[batch.indices]
    np.testing.assert_allclose(batch.weights.numpy()[:, 0], raw / raw.max(), rtol=1e-6)
    assert batch.weights.max().item() == 1.0


def test_prioritized_weights_general_beta_and_eps():
    alpha, beta, eps = 0.7, 0.4, 0.01
    buf = PrioritizedReplayBuffer(8, 1, 1, seed=2, alpha=alpha, beta=beta, eps=eps)
    for k in range(6):
        buf.add([k], [0.0], 0.0, [k], False)
    td = np.array([0.5, 0.0, 2.0, 1.0, 0.25, 3.0])
    buf.update_priorities(np.arange(6), td)
    p = (np.abs(td) + eps) ** alpha
    probs = p / p.sum()
    np.testing.assert_allclose(buf.probabilities(), probs, rtol=1e-12)
    batch = buf.sample(32)
    w = (6 * probs[batch.indices]) ** -beta
    np.testing.assert_allclose(batch.weights.numpy()[:, 0], w / w.max(), rtol=1e-6)


def test_prioritized_sampling_frequencies_follow_probabilities():
    buf = PrioritizedReplayBuffer(4, 1, 1, seed=0, alpha=1.0, eps=0.0)
    for k in range(4):
        buf.add([k], [0.0], 0.0, [k], False)
    buf.update_priorities(np.arange(4), [1.0, 2.0, 3.0, 4.0])
    counts = np.bincount(buf.sample(40_000).indices, minlength=4) / 40_000
    np.testing.assert_allclose(counts, [0.1, 0.2, 0.3, 0.4], atol=0.01)


def test_new_items_get_max_priority():
    buf = PrioritizedReplayBuffer(4, 1, 1, alpha=1.0, eps=0.0)
    buf.add([0], [0.0], 0.0, [0], False)
    buf.update_priorities([0], [5.0])
    buf.add([1], [0.0], 0.0, [1], False)
    np.testing.assert_array_equal(buf.priorities[:2], [5.0, 5.0])
    buf.update_priorities([0], [1.0])  # lowering one item keeps the running maximum
    buf.add([2], [0.0], 0.0, [2], False)
    np.testing.assert_array_equal(buf.priorities[:3], [1.0, 5.0, 5.0])
