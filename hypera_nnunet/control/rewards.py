"""Reward shaping: one shared term, each agent's specialised term, penalties and a prior.

``reward = share * z(shared) + (1 - share) * z_agent(specialised) - prior_weight * mean((x / bound)^2)``

* shared: the change of nnU-Net's pseudo-Dice EMA over the epoch, z-normalised online
  (:class:`~hypera_nnunet.rl.RunningZScore`), plus ``explode_penalty`` (<= 0) when the epoch's largest
  gradient norm exceeds ``explode_factor`` times the median of earlier epochs' mean norms. With a reference
  curve (``reward.counterfactual``: a seeded ``nnUNetTrainer`` run of the same fold and seed), the change minus
  the reference's change at the same epoch: what the epoch did beyond what nnU-Net's own schedule does at that
  point of training, so the critic is not asked to learn the curve's shape (the plain change is large early and
  small late whatever the agents do). At the last epoch ``terminal_weight`` adds the run's EMA minus the
  reference's;
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

    def __init__(self, config: SafeguardConfig, reference: list[float] | None = None,
                 terminal_weight: float = 0.0) -> None:
        """:param reference: the reference run's pseudo-Dice EMA by epoch (None: the plain change).
        :param terminal_weight: weight of the last epoch's EMA advantage over the reference."""
        self.config = config
        self.reference = None if reference is None else [float(x) for x in reference]
        self.terminal_weight = float(terminal_weight)
        self.shared_norm = RunningZScore()
        self.grad_history: list[float] = []  # each epoch's mean gradient norm, for the explosion test

    def raw_shared(self, signals) -> float:
        """The shared term before normalisation and penalties (see the module)."""
        ema = signals.ema_dice
        delta = ema[-1] - ema[-2] if len(ema) >= 2 else 0.0
        ref, e = self.reference, signals.epoch
        if ref is None or not ema:
            return delta
        if e >= len(ref):  # a run longer than its reference: the reference's curve has ended
            return delta
        out = delta - (ref[e] - ref[e - 1] if e >= 1 else 0.0)
        if self.terminal_weight and e + 1 >= signals.num_epochs:
            out += self.terminal_weight * (ema[-1] - ref[e])
        return out

    def shared(self, signals) -> float:
        out = self.shared_norm(self.raw_shared(signals))
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
