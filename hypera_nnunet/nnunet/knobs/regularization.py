"""``weight_decay`` (nnU-Net's 3e-5 times ``exp(x)``; absent when nnU-Net's is 0) and ``dropout`` (the
network's dropout probabilities times ``exp(x)``, at most 0.9; absent when the network has none, as
nnU-Net's default architecture)."""

from __future__ import annotations

import math

from torch import nn

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob

MAX_DROPOUT = 0.9


@register_knob
class WeightDecay(Knob):
    name = "weight_decay"
    position = 6

    def detect(self, trainer) -> bool:
        self.base = float(trainer.optimizer.param_groups[0].get("weight_decay", 0.0))
        return self.base > 0

    def apply(self, trainer, x: float) -> float:
        for g in trainer.optimizer.param_groups:
            g["weight_decay"] = self.base * math.exp(x)  # exp(0) == 1.0: x = 0 is nnU-Net's value exactly
        return x

    def value(self, trainer):
        return trainer.optimizer.param_groups[0]["weight_decay"]


@register_knob
class Dropout(Knob):
    name = "dropout"
    position = 7

    def detect(self, trainer) -> bool:
        dropouts = (m for m in trainer.network.modules() if isinstance(m, nn.modules.dropout._DropoutNd))
        self.modules = [m for m in dropouts if m.p > 0]
        self.base = [m.p for m in self.modules]
        return bool(self.modules)

    def apply(self, trainer, x: float) -> float:
        for m, b in zip(self.modules, self.base):
            m.p = b if x == 0.0 else float(min(MAX_DROPOUT, b * math.exp(x)))
        return x

    def value(self, trainer):
        return [m.p for m in self.modules]
