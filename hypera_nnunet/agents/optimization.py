"""OptimizationAgent: SGD momentum and Nesterov.

* Knobs: ``momentum`` -- ``1 - (1 - 0.99) * m``, i.e. the multiplier acts on the momentum's
  distance from 1 (``max_factor=2``: 0.98 to 0.995); ``nesterov`` -- binned: off when the action
  is below ``-bound/2``, else on (nnU-Net's default, at the centre of the box).
* Hook: epoch start.
* Reward: shared, plus minus the relative train-loss change.
"""

from __future__ import annotations

import math

from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent


@register_agent
class OptimizationAgent(HyperparameterAgent):
    name = "optimization"
    hook = Hook.EPOCH_START
    knobs = ("momentum", "nesterov")

    def specialised_reward(self, signals) -> float:
        tr = [v for v in signals.train_losses if math.isfinite(v)]
        if len(tr) < 2 or tr[-2] == 0:
            return 0.0
        return -(tr[-1] - tr[-2]) / abs(tr[-2])
