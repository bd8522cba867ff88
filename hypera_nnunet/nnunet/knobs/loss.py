"""The loss knobs, on nnU-Net's ``DC_and_CE_loss`` (``loss.loss.weight_ce/weight_dice``) and its
``DeepSupervisionWrapper`` (``loss.weight_factors``).

* ``ce_dice_balance``: ``weight_ce = w * sigmoid(2x + logit(weight_ce / w))``, ``weight_dice = w - weight_ce``
  with ``w`` nnU-Net's sum of the two (2): the sum stays, ``x = 0`` is nnU-Net's 1:1.
* ``ds_decay``: deep-supervision weights ``b_i ** exp(x)`` instead of nnU-Net's ``b_i = 1/2^i``,
  renormalised to nnU-Net's sum; the lowest output's weight stays 0.
"""

from __future__ import annotations

import math

import numpy as np

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _deep_supervision(trainer):
    loss = trainer.loss
    return loss if getattr(loss, "weight_factors", None) is not None else None


def _inner_loss(trainer):
    ds = _deep_supervision(trainer)
    return ds.loss if ds is not None else trainer.loss


@register_knob
class CeDiceBalance(Knob):
    name = "ce_dice_balance"
    position = 1

    def detect(self, trainer) -> bool:
        inner = _inner_loss(trainer)
        if not (hasattr(inner, "weight_ce") and hasattr(inner, "weight_dice")):
            return False
        self.base = (inner.weight_ce, inner.weight_dice)
        self.w_sum = float(inner.weight_ce + inner.weight_dice)
        self.logit0 = _logit(float(inner.weight_ce) / self.w_sum) if self.w_sum > 0 else 0.0
        return True

    def apply(self, trainer, x: float) -> float:
        inner = _inner_loss(trainer)
        if x == 0.0:  # nnU-Net's own weights, exactly (no round trip through the sigmoid)
            inner.weight_ce, inner.weight_dice = self.base
            return x
        w_ce = self.w_sum * _sigmoid(2 * x + self.logit0)
        inner.weight_ce, inner.weight_dice = w_ce, self.w_sum - w_ce
        return x

    def value(self, trainer):
        inner = _inner_loss(trainer)
        return [float(inner.weight_ce), float(inner.weight_dice)]


@register_knob
class DeepSupervisionDecay(Knob):
    name = "ds_decay"
    position = 2

    def detect(self, trainer) -> bool:
        ds = _deep_supervision(trainer)
        if ds is None:
            return False
        self.base_exact = ds.weight_factors
        self.base = tuple(float(w) for w in ds.weight_factors)
        return True

    def apply(self, trainer, x: float) -> float:
        if x == 0.0:  # nnU-Net's own weights, exactly (no renormalisation rounding)
            _deep_supervision(trainer).weight_factors = self.base_exact
            return x
        m = math.exp(x)
        w = np.array([b ** m if b > 0 else b for b in self.base])
        _deep_supervision(trainer).weight_factors = tuple(float(v) for v in w / w.sum() * sum(self.base))
        return x

    def value(self, trainer):
        return [round(w, 6) for w in _deep_supervision(trainer).weight_factors]
