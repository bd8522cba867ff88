"""The hyperparameter agent: a set of no-op hooks plus ``state_dict``/``load_state_dict``.

An agent owns one SAC learner and a replay buffer. It never touches the trainer: it proposes
log-multipliers for the knobs it controls (``log(value / nnU-Net's value)``), and the coordinator
resolves, bounds and applies them through :mod:`hypera_nnunet.nnunet.knobs`. A log-multiplier of 0
is nnU-Net's own behaviour; the action box is centred on 0, and the policy's mean head starts at
zero, so a fresh agent's *deterministic* action is nnU-Net's schedule and weights. While it explores
(the first ``exploration.explore_until`` of training, then with less noise until ``exploit_until``),
its sampled actions are not: a fresh run is nnU-Net's own only in ``shadow`` mode or when frozen.

The coordinator talks to an agent only through this class's methods; it never reaches into the learner.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hypera_nnunet.rl import SAC, PrioritizedReplayBuffer, ReplayBuffer, RunningZScore, SACConfig
from hypera_nnunet.rl.batched import update_together
from hypera_nnunet.settings import AgentSettings, LearningConfig


class Hook(str, enum.Enum):
    """Where in nnU-Net's epoch an agent acts."""

    EPOCH_START = "epoch_start"  # after nnU-Net's on_train_epoch_start (the poly LR has stepped)
    ITERATION = "iteration"  # every N training iterations within the epoch (learning-rate agent option)
    AFTER_VALIDATION = "after_validation"  # after on_validation_epoch_end, effective from the next epoch


@dataclass(frozen=True)
class Proposal:
    """One agent's wish for one knob, in log-multiplier units."""

    knob: str
    value: float
    confidence: float
    priority: int
    max_step: float


AGENTS: dict[str, type[HyperparameterAgent]] = {}


def register_agent(cls: type[HyperparameterAgent]) -> type[HyperparameterAgent]:
    """Class decorator: make the agent available as ``agents: {<cls.name>: ...}`` in the configuration."""
    if cls.name in AGENTS:
        raise ValueError(f"agent '{cls.name}' is registered twice")
    AGENTS[cls.name] = cls
    return cls


class HyperparameterAgent:
    """Base class. Subclasses set ``name``, ``hook``, ``knobs`` and may override ``specialised_reward``."""

    name: str = "base"
    hook: Hook = Hook.EPOCH_START
    knobs: tuple[str, ...] = ()
    Settings = AgentSettings

    def __init__(self, settings: AgentSettings, obs_dim: int, knobs: tuple[str, ...] | None = None,
                 learning: LearningConfig = LearningConfig(), seed: int = 0) -> None:
        self.settings = settings
        self.knobs = tuple(self.knobs if knobs is None else knobs)
        if not self.knobs:
            raise ValueError(f"agent '{self.name}' has no knob to act on")
        self.learning = learning
        self.bound = math.log(settings.max_factor)
        if self.bound <= 0:
            raise ValueError(f"agent '{self.name}': max_factor must be > 1, got {settings.max_factor}")
        sac_cfg = SACConfig(hidden=learning.hidden, gamma=learning.gamma, actor_lr=learning.lr,
                            critic_lr=learning.lr, alpha_lr=learning.lr, zero_init_mean=True,
                            init_log_std=learning.init_log_std, init_alpha=0.1)
        act_dim = len(self.knobs)
        self.trust = 1.0
        self.sac = SAC(obs_dim, act_dim, [-self.bound] * act_dim, [self.bound] * act_dim, sac_cfg, seed=seed)
        buf_cls = PrioritizedReplayBuffer if learning.prioritized else ReplayBuffer
        self.buffer = buf_cls(learning.buffer_size, obs_dim, act_dim, seed=seed + 1)
        self.special_norm = RunningZScore()
        self.pending: list[dict] = []  # {"obs", "action"} of this epoch's decisions, waiting for the reward
        self.decisions = 0

    #: > 0: also re-decide every N training iterations within the epoch (the learning-rate agent's option)
    every_n_iterations: int = 0

    @classmethod
    def wanted_knobs(cls, settings: AgentSettings) -> tuple[str, ...]:
        """The knobs this agent acts on with these settings (the trainer may lack some)."""
        return cls.knobs

    # ---- hooks (no-ops unless a subclass needs them) -------------------------------------------
    def on_train_start(self, coordinator) -> None:
        pass

    def on_train_end(self, coordinator) -> None:
        pass

    # ---- acting and learning -------------------------------------------------------------------
    def set_trust(self, level: float) -> None:
        """Scale the action box to ``level`` of the full bounds (trust safeguard)."""
        self.trust = float(level)
        b = self.bound * self.trust
        self.sac.set_bounds([-b] * len(self.knobs), [b] * len(self.knobs))

    def set_target_entropy(self, value: float) -> None:
        """SAC's entropy target for the temperature update (annealed by the coordinator)."""
        self.sac.target_entropy = float(value)

    @property
    def updates(self) -> int:
        """SAC updates done so far."""
        return self.sac.n_updates

    def act(self, obs: np.ndarray, deterministic: bool, noise_scale: float = 1.0) -> np.ndarray:
        self.decisions += 1
        return self.sac.act(obs, deterministic=deterministic, noise_scale=noise_scale)

    def propose(self, action: np.ndarray) -> list[Proposal]:
        return [Proposal(k, float(a), self.trust, self.settings.priority, self.settings.max_step)
                for k, a in zip(self.knobs, action)]

    def remember(self, obs: np.ndarray, executed: np.ndarray) -> None:
        """Record the state and the action that was really applied (after conflicts and bounds)."""
        self.pending.append({"obs": np.asarray(obs, np.float32), "action": np.asarray(executed, np.float32)})

    def complete(self, reward: float, next_obs: np.ndarray, done: bool = False) -> list[tuple]:
        """Close the pending transitions with the epoch's reward. With several decisions in one epoch
        (iteration-level LR), each one's next state is the state of the decision after it.

        :returns: the transitions added, as ``(obs, action, reward, next_obs, done)`` (for the experience store)."""
        added = []
        for i, p in enumerate(self.pending):
            last = i == len(self.pending) - 1
            nxt = next_obs if last else self.pending[i + 1]["obs"]
            self.buffer.add(p["obs"], p["action"], reward, nxt, done and last)
            added.append((p["obs"], p["action"], float(reward), np.asarray(nxt, np.float32), bool(done and last)))
        self.pending = []
        return added

    def learn(self) -> dict:
        """``gradient_steps`` SAC updates once the buffer holds ``learning_starts`` transitions; the last
        update's losses (empty before learning starts)."""
        return learn_together([self]).get(self.name, {})

    def specialised_reward(self, signals) -> float:
        """The agent's own reward term, before normalisation. Default: none."""
        return 0.0

    # ---- persistence ---------------------------------------------------------------------------
    def state_dict(self, with_buffer: bool = True, copy_tensors: bool = True) -> dict:
        state = {
            "name": self.name, "knobs": list(self.knobs), "sac": self.sac.state_dict(copy_tensors),
            "trust": self.trust,
            "special_norm": self.special_norm.state_dict(), "pending": self.pending,
            "decisions": self.decisions,
        }
        if with_buffer:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict, policy_only: bool = False) -> None:
        if list(state["knobs"]) != list(self.knobs):
            raise ValueError(f"agent '{self.name}': saved knobs {state['knobs']} differ from {list(self.knobs)}")
        self.sac.load_state_dict(state["sac"], policy_only=policy_only)
        if policy_only:
            return
        self.set_trust(state["trust"])
        self.special_norm.load_state_dict(state["special_norm"])
        self.pending = list(state["pending"] or [])
        self.decisions = int(state["decisions"])
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])


    def policy_state(self) -> dict:
        """What transfer needs (``policies.pt``): the knobs, the observation size, networks and temperature."""
        return {"knobs": list(self.knobs), "obs_dim": self.sac.obs_dim, "sac": self.sac.state_dict()}

    def load_policy(self, policy: dict, source: str) -> None:
        """Load :meth:`policy_state` of an earlier run (networks and temperature only).

        :param source: the file it came from, named in errors."""
        if list(policy["knobs"]) != list(self.knobs):
            raise ValueError(f"{source}: agent '{self.name}' was saved with knobs {policy['knobs']}, this run has "
                             f"{list(self.knobs)}")
        saved = policy.get("obs_dim", _obs_dim_of(policy["sac"]))
        if saved != self.sac.obs_dim:
            raise ValueError(f"{source}: agent '{self.name}' was saved with observation size {saved}, this run has "
                             f"{self.sac.obs_dim} (a different set of knobs in the trainer)")
        self.sac.load_state_dict(policy["sac"], policy_only=True)


def _obs_dim_of(sac_state: dict) -> int | None:
    """The observation size of a saved actor (its first layer's input width), for files without ``obs_dim``."""
    first = next((v for k, v in sac_state["actor"].items() if k.endswith("weight")), None)
    return None if first is None else int(first.shape[1])


def learn_together(agents: Sequence[HyperparameterAgent]) -> dict[str, dict]:
    """Each agent's :meth:`HyperparameterAgent.learn`, with the agents' k-th SAC updates done as one
    batched step (:func:`hypera_nnunet.rl.batched.update_together`).

    Every agent samples its own buffer and draws from its own generator, in the same order as when it
    learns alone, so the result is the same up to float rounding; the six agents' updates take about a
    third of the time (``benchmarks/agent_step_time.py``). Returns agent name -> the last update's
    losses, for agents whose buffer holds ``learning_starts`` transitions."""
    if len({a.name for a in agents}) != len(agents):
        raise ValueError(f"agent names repeat in {[a.name for a in agents]}")
    ready = [a for a in agents if len(a.buffer) >= a.learning.learning_starts]
    last: dict[str, dict] = {}
    for step in range(max((a.learning.gradient_steps for a in ready), default=0)):
        active = [a for a in ready if step < a.learning.gradient_steps]
        batches = [a.buffer.sample(a.learning.batch_size) for a in active]
        for a, batch, out in zip(active, batches, update_together([a.sac for a in active], batches)):
            if isinstance(a.buffer, PrioritizedReplayBuffer):
                a.buffer.update_priorities(batch.indices, out["td_errors"])
            last[a.name] = out
    return {name: {k: v for k, v in out.items() if k != "td_errors"} for name, out in last.items()}
