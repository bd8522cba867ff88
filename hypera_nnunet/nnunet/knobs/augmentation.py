"""``aug_prob`` and ``aug_strength``: probabilities and amplitudes of nnU-Net's batchgeneratorsv2 training
transforms (:func:`hypera_nnunet.nnunet.pipeline.scale_transforms`).

A change larger than :data:`REBUILD_TOLERANCE` (log units) rebuilds the training pipeline; a smaller one
is skipped and the built value is returned as executed. A return to nnU-Net's own value (``x = 0``: shadow
mode, agents switched off) always rebuilds, so "nnU-Net's settings" means exactly nnU-Net's.
"""

from __future__ import annotations

import math

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob
from hypera_nnunet.nnunet.pipeline import rebuild_dataloaders

REBUILD_TOLERANCE = 0.05  # log units: smaller augmentation changes do not restart the dataloaders


class _Augmentation(Knob):
    def detect(self, trainer) -> bool:
        return hasattr(trainer, "hypera_aug")

    def apply(self, trainer, x: float) -> float:
        built = math.log(trainer.hypera_aug[self.name])
        if x == built or (x != 0.0 and abs(x - built) <= REBUILD_TOLERANCE):
            return built
        trainer.hypera_aug[self.name] = math.exp(x)
        rebuild_dataloaders(trainer, "augmentation")
        return x

    def value(self, trainer):
        return float(trainer.hypera_aug[self.name])


@register_knob
class AugmentationProbability(_Augmentation):
    name = "aug_prob"
    position = 4


@register_knob
class AugmentationStrength(_Augmentation):
    name = "aug_strength"
    position = 5
