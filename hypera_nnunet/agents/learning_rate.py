"""LearningRateAgent: a bounded multiplier on nnU-Net's poly learning-rate schedule.

* Knob: ``lr`` -- ``lr = poly_lr(epoch) * m``, ``m`` in ``[1/max_factor, max_factor]``.
* Hook: epoch start, after nnU-Net's scheduler has stepped (it overwrites the LR every epoch, so the
  multiplier never compounds). With ``every_n_iterations=N`` it also re-decides every N training
  iterations (before that iteration's optimizer step), from the gradient norms seen so far in the
  epoch; all of the epoch's decisions share the epoch's reward.
* State: the shared state (:mod:`hypera_nnunet.control.signals`).
* Reward: shared reward, plus a specialised term that penalises gradient-norm instability
  (coefficient of variation of the epoch's gradient norms). The shared reward is the EMA
  pseudo-Dice change, not the train loss: greedy loss rewards push learning rates too low, since
  a smaller step lowers next epoch's loss noise without making the model better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent
from hypera_nnunet.settings import AgentSettings, Rule, setting


@dataclass(frozen=True)
class LRSettings(AgentSettings):
    """:param every_n_iterations: also decide every N training iterations within the epoch (an integer >= 0;
        0: epochs only)."""

    every_n_iterations: int = setting(0, Rule("int", ge=0))


@register_agent
class LearningRateAgent(HyperparameterAgent):
    name = "learning_rate"
    hook = Hook.EPOCH_START
    knobs = ("lr",)
    Settings = LRSettings

    def __init__(self, settings: LRSettings, obs_dim: int, **kwargs) -> None:
        super().__init__(settings, obs_dim, **kwargs)
        self.every_n_iterations = int(getattr(settings, "every_n_iterations", 0))

    def specialised_reward(self, signals) -> float:
        g = np.asarray([v for v in signals.grad_norms if np.isfinite(v)])
        if g.size < 2 or g.mean() <= 0:
            return 0.0
        return -float(g.std() / g.mean())
