"""Replay storage with typed batches.

:class:`ReplayBuffer` samples uniformly. :class:`PrioritizedReplayBuffer` samples proportionally to
``(|td| + eps) ** alpha`` and returns importance-sampling weights ``(N * P(i)) ** -beta / max``
(Schaul et al., 2016, "Prioritized Experience Replay", arXiv:1511.05952, sec. 3.3-3.4).

HYPERA's agents store one transition per epoch, so buffers hold hundreds of items, and an O(N)
draw from the priority vector is faster than a sum-tree at that size; it also stays fine for the
20k-step Pendulum check.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class ReplayBatch(NamedTuple):
    """A minibatch as float32 tensors; ``weights`` are IS weights (ones when uniform)."""

    observations: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor  # (B, 1)
    next_observations: torch.Tensor
    dones: torch.Tensor  # (B, 1), 1.0 where the episode ended (no bootstrap)
    weights: torch.Tensor  # (B, 1)
    indices: np.ndarray  # (B,) positions in the buffer, for priority updates


class ReplayBuffer:
    """A circular buffer of ``(s, a, r, s', done)`` with its own random generator."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros((capacity, 1), dtype=np.float32)
        self.dones = np.zeros((capacity, 1), dtype=np.float32)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, done: bool) -> int:
        i = self.pos
        self.obs[i] = obs
        self.actions[i] = action
        self.rewards[i, 0] = reward
        self.next_obs[i] = next_obs
        self.dones[i, 0] = float(done)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self._on_add(i)
        return i

    def _on_add(self, index: int) -> None:
        pass

    def _draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        idx = self.rng.integers(0, self.size, size=batch_size)
        return idx, np.ones(batch_size, dtype=np.float32)

    def sample(self, batch_size: int) -> ReplayBatch:
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        idx, w = self._draw(batch_size)
        t = torch.from_numpy
        return ReplayBatch(
            t(self.obs[idx]), t(self.actions[idx]), t(self.rewards[idx]), t(self.next_obs[idx]),
            t(self.dones[idx]), t(w[:, None].astype(np.float32)), idx,
        )

    def state_dict(self) -> dict:
        n = self.size
        return {
            "capacity": self.capacity, "pos": self.pos, "size": n,
            "obs": self.obs[:n].copy(), "next_obs": self.next_obs[:n].copy(), "actions": self.actions[:n].copy(),
            "rewards": self.rewards[:n].copy(), "dones": self.dones[:n].copy(),
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        if state["capacity"] != self.capacity or state["obs"].shape[1:] != self.obs.shape[1:]:
            raise ValueError(
                f"replay buffer shape mismatch: saved capacity {state['capacity']}, obs {state['obs'].shape[1:]}; "
                f"this buffer {self.capacity}, {self.obs.shape[1:]}"
            )
        n = state["size"]
        for name in ("obs", "next_obs", "actions", "rewards", "dones"):
            getattr(self, name)[:n] = state[name]
        self.pos, self.size = state["pos"], n
        self.rng.bit_generator.state = state["rng"]


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay. New items get the current maximum priority."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, seed: int = 0, alpha: float = 0.6,
                 beta: float = 0.4, eps: float = 1e-6) -> None:
        super().__init__(capacity, obs_dim, act_dim, seed)
        self.alpha, self.beta, self.eps = float(alpha), float(beta), float(eps)
        self.priorities = np.zeros(capacity, dtype=np.float64)
        self.max_priority = 1.0

    def _on_add(self, index: int) -> None:
        self.priorities[index] = self.max_priority

    def probabilities(self) -> np.ndarray:
        p = self.priorities[: self.size] ** self.alpha
        return p / p.sum()

    def _draw(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        probs = self.probabilities()
        idx = self.rng.choice(self.size, size=batch_size, p=probs)
        w = (self.size * probs[idx]) ** (-self.beta)
        return idx, (w / w.max()).astype(np.float32)

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray) -> None:
        pr = np.abs(np.asarray(td_errors, dtype=np.float64)).reshape(-1) + self.eps
        self.priorities[np.asarray(indices)] = pr
        self.max_priority = max(self.max_priority, float(pr.max()))

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(priorities=self.priorities[: self.size].copy(), max_priority=self.max_priority, beta=self.beta)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.priorities[: self.size] = state["priorities"]
        self.max_priority, self.beta = state["max_priority"], state["beta"]
