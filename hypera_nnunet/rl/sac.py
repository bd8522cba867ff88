"""Soft Actor-Critic: acting, and one gradient step per ``update(batch)``.

Follows Haarnoja et al. (2018), "Soft Actor-Critic Algorithms and Applications" (arXiv:1812.05905):
twin Q critics with the min target, Polyak-averaged target critics, and an entropy temperature
tuned towards a target entropy. The caller owns the loop and the replay buffer (SB3's split), so an
epoch-level HYPERA agent and a per-step Pendulum learner drive the same class.

All randomness is local: networks are initialised inside ``torch.random.fork_rng`` with the given
seed and actions are drawn from a private ``torch.Generator``, so creating or using an agent never
moves the global torch RNG that nnU-Net's training relies on.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from hypera_nnunet.rl.buffers import ReplayBatch
from hypera_nnunet.rl.policies import SquashedGaussianActor, TwinQCritic


@dataclass(frozen=True)
class SACConfig:
    """SAC hyperparameters. The defaults are SB3's SAC defaults except the network width.

    Attributes:
        hidden: hidden layer widths of actor and critics.
        gamma: discount. Epoch-level agents use a lower value (see ``agents.base``).
        tau: Polyak coefficient of the target critics.
        actor_lr, critic_lr, alpha_lr: Adam learning rates.
        init_alpha: initial entropy temperature.
        target_entropy: entropy target; ``None`` means ``-act_dim`` (Haarnoja et al., 2018, sec. 5).
        autotune_alpha: learn the temperature; else keep ``init_alpha``.
        zero_init_mean: start with a zero mean head, so the deterministic action is the bounds' centre.
        init_log_std: initial log-std of the policy (``None``: default init).
    """

    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 0.99
    tau: float = 0.005
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    init_alpha: float = 1.0
    target_entropy: float | None = None
    autotune_alpha: bool = True
    zero_init_mean: bool = False
    init_log_std: float | None = None


class SAC:
    """One SAC learner over a continuous, bounded action box."""

    def __init__(self, obs_dim: int, act_dim: int, low, high, config: SACConfig = SACConfig(), seed: int = 0) -> None:
        self.obs_dim, self.act_dim, self.config = int(obs_dim), int(act_dim), config
        with torch.random.fork_rng(devices=[]):  # the global CPU generator is restored afterwards
            torch.default_generator.manual_seed(seed)  # not torch.manual_seed: it would re-seed CUDA too
            self.actor = SquashedGaussianActor(obs_dim, act_dim, config.hidden, low, high,
                                               zero_init_mean=config.zero_init_mean, init_log_std=config.init_log_std)
            self.critic = TwinQCritic(obs_dim, act_dim, config.hidden)
            self.critic_target = TwinQCritic(obs_dim, act_dim, config.hidden)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = torch.tensor([float(np.log(config.init_alpha))], requires_grad=True)
        self.actor_opt = _adam(self.actor.parameters(), config.actor_lr)
        self.critic_opt = _adam(self.critic.parameters(), config.critic_lr)
        self.alpha_opt = _adam([self.log_alpha], config.alpha_lr)
        self.target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)
        self.generator = torch.Generator().manual_seed(seed)
        self.n_updates = 0
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.critic_target.parameters())

    @property
    def alpha(self) -> float:
        return float(self.log_alpha.detach().exp())

    def set_bounds(self, low, high) -> None:
        """Change the action box (the policy keeps its weights; actions rescale)."""
        self.actor.set_bounds(low, high)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.actor.low.numpy().copy(), self.actor.high.numpy().copy()

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False, noise_scale: float = 1.0) -> np.ndarray:
        """An action for one observation: sampled in training, the squashed mean in inference."""
        o = torch.as_tensor(np.asarray(obs, dtype=np.float32)).reshape(1, -1)
        a, _ = self.actor(o, self.generator, deterministic=deterministic, noise_scale=noise_scale)
        return a[0].numpy()

    def update(self, batch: ReplayBatch) -> dict:
        """One gradient step on critics, actor and temperature. Returns losses and per-item TD errors."""
        alpha = self.log_alpha.detach().exp()
        with torch.no_grad():
            next_a, next_logp = self.actor(batch.next_observations, self.generator)
            q1_t, q2_t = self.critic_target(batch.next_observations, next_a)
            q_next = torch.min(q1_t, q2_t) - alpha * next_logp
            target = batch.rewards + self.config.gamma * (1.0 - batch.dones) * q_next

        q1, q2 = self.critic(batch.observations, batch.actions)
        td1, td2 = q1 - target, q2 - target
        critic_loss = 0.5 * (batch.weights * (td1.pow(2) + td2.pow(2))).mean()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        # The actor is scored by the critics. Differentiating with respect to the actor's parameters
        # only leaves the critics' gradients alone and skips computing them (a third of the backward).
        pi_a, logp = self.actor(batch.observations, self.generator)
        q1_pi, q2_pi = self.critic(batch.observations, pi_a)
        actor_loss = (alpha * logp - torch.min(q1_pi, q2_pi)).mean()
        for p, g in zip(self._actor_params, torch.autograd.grad(actor_loss, self._actor_params)):
            p.grad = g
        self.actor_opt.step()

        alpha_loss = torch.zeros(())
        if self.config.autotune_alpha:
            alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
            self.alpha_opt.zero_grad(set_to_none=True)
            alpha_loss.backward()
            self.alpha_opt.step()

        with torch.no_grad():
            torch._foreach_lerp_(self._target_params, self._critic_params, self.config.tau)
        self.n_updates += 1
        return {
            "critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(), "alpha_loss": alpha_loss.item(),
            "alpha": float(self.log_alpha.detach().exp()), "entropy": float(-logp.detach().mean()),
            "td_errors": (0.5 * (td1 + td2)).detach().abs().reshape(-1).numpy(),
        }

    def state_dict(self, copy_tensors: bool = True) -> dict:
        """A snapshot that owns its tensors: later updates do not change it (torch's own state dicts alias).

        ``copy_tensors=False`` returns live views, for read-only uses such as fingerprints."""
        state = {
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(), "log_alpha": self.log_alpha.detach(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(), "target_entropy": self.target_entropy,
            "generator": self.generator.get_state(), "n_updates": self.n_updates,
        }
        return copy.deepcopy(state) if copy_tensors else state

    def load_state_dict(self, state: dict, policy_only: bool = False) -> None:
        """Restore everything, or with ``policy_only`` just the networks and temperature (transfer)."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if policy_only:
            return
        # torch's Optimizer.load_state_dict keeps the given moment tensors (no copy): without the deep
        # copy, two agents loaded from one state would share and both advance the same Adam moments.
        self.actor_opt.load_state_dict(copy.deepcopy(state["actor_opt"]))
        self.critic_opt.load_state_dict(copy.deepcopy(state["critic_opt"]))
        self.alpha_opt.load_state_dict(copy.deepcopy(state["alpha_opt"]))
        self.target_entropy = float(state["target_entropy"])
        self.generator.set_state(state["generator"])
        self.n_updates = int(state["n_updates"])


def _adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam with torch's fused CPU kernel where this torch has it (2.4+), else the for-loop version.

    Same algorithm, one kernel per step instead of ~10 small ops per parameter tensor: an update of
    these tiny networks is dominated by per-op overhead, and the optimizer steps were 40% of it
    (torch profiler, 64x64 networks, batch 32, one thread)."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr)
