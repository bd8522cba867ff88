"""Reward shaping: one shared term, each agent's specialised term, penalties and a prior.

``reward = share * z(shared) + (1 - share) * z_agent(specialised) - prior_weight * mean((x / bound)^2)``

* shared: the change of nnU-Net's pseudo-Dice EMA over the epoch, z-normalised online
  (:class:`~hypera_nnunet.rl.RunningZScore`), plus ``explode_penalty`` (<= 0) when the epoch's largest
  gradient norm exceeds ``explode_factor`` times the median of earlier epochs' mean norms;
* specialised: the agent's own :meth:`specialised_reward`, normalised by the agent's own z-score;
* prior: pulls every knob towards nnU-Net's own value (``x = 0``);
* an epoch that was rolled back gives every agent ``rollback_penalty``; a non-finite epoch ``nan_penalty``.
"""

from __future__ import annotations

import numpy as np

from hypera_nnunet.rl import RunningZScore
from hypera_nnunet.settings import SafeguardConfig


class RewardShaper:
    """:param config: the penalties and the prior weight."""

    def __init__(self, config: SafeguardConfig) -> None:
        self.config = config
        self.shared_norm = RunningZScore()
        self.grad_history: list[float] = []  # each epoch's mean gradient norm, for the explosion test

    def shared(self, signals) -> float:
        ema = signals.ema_dice
        out = self.shared_norm(ema[-1] - ema[-2] if len(ema) >= 2 else 0.0)
        g_max = max(signals.grad_norms) if signals.grad_norms else 0.0
        if self.grad_history and g_max > self.config.explode_factor * float(np.median(self.grad_history)):
            out += self.config.explode_penalty
        if signals.grad_norms:
            self.grad_history.append(float(np.mean(signals.grad_norms)))
        return out

    def rewards(self, signals, agents, log_m: dict[str, float], rolled_back: bool) -> dict[str, float]:
        """Each agent's reward for the epoch that ``signals`` describe."""
        sg = self.config
        if rolled_back:
            return {a.name: sg.rollback_penalty for a in agents}
        if not signals.finite:
            return {a.name: sg.nan_penalty for a in agents}
        shared = self.shared(signals)
        out = {}
        for a in agents:
            special = a.special_norm(a.specialised_reward(signals))
            prior = float(np.mean([(log_m[k] / a.bound) ** 2 for k in a.knobs]))
            s = a.settings.share
            out[a.name] = float(s * shared + (1 - s) * special - sg.prior_weight * prior)
        return out
