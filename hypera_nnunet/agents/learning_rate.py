"""LearningRateAgent: a bounded multiplier on nnU-Net's poly learning-rate schedule.

* Knob: ``lr`` -- ``lr = poly_lr(epoch) * m``, ``m`` in ``[1/max_factor, max_factor]``.
* Hook: epoch start, after nnU-Net's scheduler has stepped (it overwrites the LR every epoch, so the
  multiplier never compounds).
* State: the shared state (:mod:`hypera_nnunet.signals`).
* Reward: shared reward, plus a specialised term that penalises gradient-norm instability
  (coefficient of variation of the epoch's gradient norms). The shared reward is the EMA
  pseudo-Dice change, not the train loss: greedy loss rewards push learning rates too low, since
  a smaller step lowers next epoch's loss noise without making the model better.
"""

from __future__ import annotations

import numpy as np

from hypera_nnunet.agents.base import Hook, HyperparameterAgent


class LearningRateAgent(HyperparameterAgent):
    name = "learning_rate"
    hook = Hook.EPOCH_START
    knobs = ("lr",)

    def specialised_reward(self, signals) -> float:
        g = np.asarray([v for v in signals.grad_norms if np.isfinite(v)])
        if g.size < 2 or g.mean() <= 0:
            return 0.0
        return -float(g.std() / g.mean())
