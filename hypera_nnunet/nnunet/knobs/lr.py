"""``lr``: a multiplier on nnU-Net's poly learning-rate schedule, ``lr = poly_lr(epoch) * exp(x)``.

nnU-Net's ``on_train_epoch_start`` overwrites the learning rate every epoch, so the base is re-read then
(:meth:`LearningRate.on_epoch_start`) and the multiplier never compounds.
"""

from __future__ import annotations

import math

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob


@register_knob
class LearningRate(Knob):
    name = "lr"
    position = 0

    def detect(self, trainer) -> bool:
        self.base = trainer.optimizer.param_groups[0]["lr"]
        return True

    def on_epoch_start(self, trainer) -> None:
        self.base = trainer.optimizer.param_groups[0]["lr"]

    def apply(self, trainer, x: float) -> float:
        for g in trainer.optimizer.param_groups:
            g["lr"] = self.base * math.exp(x)
        return x

    def value(self, trainer):
        return trainer.optimizer.param_groups[0]["lr"]
