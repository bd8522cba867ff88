"""``momentum`` (``1 - (1 - 0.99) * exp(x)``: the multiplier acts on the distance from 1) and ``nesterov``
(off when ``x`` is below :data:`NESTEROV_OFF_BELOW`, else nnU-Net's own setting)."""

from __future__ import annotations

import math

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob

NESTEROV_OFF_BELOW = -0.35  # log-multiplier under which Nesterov is switched off (about -log(2)/2)


def _has_momentum(trainer) -> bool:
    g0 = trainer.optimizer.param_groups[0]
    return "momentum" in g0 and 0 < g0["momentum"] < 1


@register_knob
class Momentum(Knob):
    name = "momentum"
    position = 8

    def detect(self, trainer) -> bool:
        if not _has_momentum(trainer):
            return False
        self.base = float(trainer.optimizer.param_groups[0]["momentum"])
        return True

    def apply(self, trainer, x: float) -> float:
        for g in trainer.optimizer.param_groups:  # x = 0: nnU-Net's own value, exactly
            g["momentum"] = self.base if x == 0.0 else 1 - (1 - self.base) * math.exp(x)
        return x

    def value(self, trainer):
        return trainer.optimizer.param_groups[0]["momentum"]


@register_knob
class Nesterov(Knob):
    name = "nesterov"
    position = 9

    def detect(self, trainer) -> bool:
        g0 = trainer.optimizer.param_groups[0]
        if not (_has_momentum(trainer) and "nesterov" in g0):
            return False
        self.base = bool(g0["nesterov"])
        return True

    def apply(self, trainer, x: float) -> float:
        for g in trainer.optimizer.param_groups:
            g["nesterov"] = self.base and x >= NESTEROV_OFF_BELOW
        return x

    def value(self, trainer):
        return bool(trainer.optimizer.param_groups[0]["nesterov"])
