"""AugmentationAgent: probabilities and strength of nnU-Net's batchgeneratorsv2 training transforms.

* Knobs: ``aug_prob`` -- multiplies every ``RandomTransform.apply_probability`` and the spatial
  transform's rotation/scaling probabilities (clipped to [0, 1]); ``aug_strength`` -- scales the
  amplitude of noise variance, blur sigma, brightness/contrast/gamma ranges and the scaling range
  around identity.
* Hook: epoch start; the trainer rebuilds its training pipeline when a value moves by more than
  ``rebuild_tolerance`` (log units), so workers get the new transforms.
* Reward: shared, plus minus the change of the generalisation gap (validation minus train loss).
"""

from __future__ import annotations

from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent


def gap_change(signals) -> float:
    tr, va = signals.train_losses, signals.val_losses
    if len(tr) < 2 or len(va) < 2:
        return 0.0
    return -((va[-1] - tr[-1]) - (va[-2] - tr[-2]))


@register_agent
class AugmentationAgent(HyperparameterAgent):
    name = "augmentation"
    hook = Hook.EPOCH_START
    knobs = ("aug_prob", "aug_strength")

    def specialised_reward(self, signals) -> float:
        return gap_change(signals)
