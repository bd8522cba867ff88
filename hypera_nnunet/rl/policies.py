"""SAC networks: a tanh-squashed Gaussian actor scaled to the action bounds, and twin Q critics."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0  # as in Haarnoja et al. (2018) reference code and SB3
TANH_EPS = 1e-6  # keeps log(1 - tanh(u)^2) finite at saturation


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


class SquashedGaussianActor(nn.Module):
    """pi(a|s) = bias + scale * tanh(u), u ~ N(mu(s), sigma(s)).

    The log-density gets the change-of-variables term ``- sum log(1 - tanh(u)^2)`` (Haarnoja et al.,
    2018, arXiv:1801.01290, appendix C). It is the density of the normalised action ``tanh(u)`` in
    [-1, 1]: the affine rescaling adds the constant ``- sum log(scale)``, which we leave out so that a
    target entropy (default ``-act_dim``) means the same for every agent's bounds, as in SB3.
    ``scale``/``bias`` are buffers, so an agent can narrow or widen its bounds (trust) without
    touching the weights.

    With ``zero_init_mean`` the last layer of the mean head starts at zero: a fresh actor's
    deterministic action is exactly ``bias``, the centre of the bounds. HYPERA centres every
    agent's bounds on nnU-Net's own value, so a fresh agent starts at nnU-Net's behaviour.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int], low, high,
                 zero_init_mean: bool = False, init_log_std: float | None = None) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden[:-1], hidden[-1]) if len(hidden) > 1 else nn.Linear(obs_dim, hidden[0])
        self.act = nn.ReLU()
        self.mu = nn.Linear(hidden[-1], act_dim)
        self.log_std = nn.Linear(hidden[-1], act_dim)
        if zero_init_mean:
            nn.init.zeros_(self.mu.weight)
            nn.init.zeros_(self.mu.bias)
        if init_log_std is not None:
            nn.init.zeros_(self.log_std.weight)
            nn.init.constant_(self.log_std.bias, float(init_log_std))
        self.register_buffer("scale", torch.zeros(act_dim))
        self.register_buffer("bias", torch.zeros(act_dim))
        # The exact box, for clamping: in float32, bias +- scale can land one ulp outside [low, high]
        # (e.g. low=0.1, high=0.3). Not saved; re-derived from scale/bias when a state brings other ones.
        self.register_buffer("low", torch.zeros(act_dim), persistent=False)
        self.register_buffer("high", torch.zeros(act_dim), persistent=False)
        self.set_bounds(low, high)
        self.register_load_state_dict_post_hook(_sync_box_after_load)

    def set_bounds(self, low, high) -> None:
        low = torch.as_tensor(low, dtype=torch.float32).reshape(-1)
        high = torch.as_tensor(high, dtype=torch.float32).reshape(-1)
        if low.shape != self.scale.shape or bool((high <= low).any()):
            raise ValueError(f"invalid action bounds low={low.tolist()} high={high.tolist()}")
        self.scale.copy_((high - low) / 2)
        self.bias.copy_((high + low) / 2)
        self.low.copy_(low)
        self.high.copy_(high)

    def _dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.act(self.trunk(obs))
        return self.mu(h), self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False, noise_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(action, log_prob)``; ``log_prob`` has shape (B, 1).

        ``noise_scale`` < 1 shrinks exploration around the mean (HYPERA's exploit phase); the
        returned log-probability is always that of the full policy, as the SAC update needs it.
        """
        mu, log_std = self._dist_params(obs)
        std = log_std.exp()
        if deterministic:
            u = mu
        else:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
            u = mu + noise_scale * std * eps
        y = torch.tanh(u)
        action = torch.clamp(self.bias + self.scale * y, self.low, self.high)  # only ever moves it by an ulp
        log_prob = (-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1, keepdim=True)
        log_prob = log_prob - torch.log(1 - y.pow(2) + TANH_EPS).sum(-1, keepdim=True)
        return action, log_prob


def _sync_box_after_load(actor: SquashedGaussianActor, incompatible_keys) -> None:
    """Keep the exact box if it still gives the loaded scale/bias, else take the box they define."""
    low, high = actor.low, actor.high
    if not (torch.equal((high - low) / 2, actor.scale) and torch.equal((high + low) / 2, actor.bias)):
        low.copy_(actor.bias - actor.scale)
        high.copy_(actor.bias + actor.scale)


class TwinQCritic(nn.Module):
    """Two independent Q(s, a) networks; the update uses their minimum (Fujimoto et al., 2018, TD3)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, hidden, 1)
        self.q2 = mlp(obs_dim + act_dim, hidden, 1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x), self.q2(x)
