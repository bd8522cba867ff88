"""RegularizationAgent: weight decay, and dropout where the network has it.

* Knobs: ``weight_decay`` -- nnU-Net's 3e-5 times ``m``; ``dropout`` -- the network's dropout
  probability times ``m`` (only when the architecture has dropout; nnU-Net's default has none, and
  then the knob is absent).
* Hook: after validation, so the decision sees this epoch's validation loss; effective next epoch.
* Reward: shared, plus minus the change of the generalisation gap.
"""

from __future__ import annotations

from hypera_nnunet.agents.augmentation import gap_change
from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent


@register_agent
class RegularizationAgent(HyperparameterAgent):
    name = "regularization"
    hook = Hook.AFTER_VALIDATION
    knobs = ("weight_decay", "dropout")

    def specialised_reward(self, signals) -> float:
        return gap_change(signals)
