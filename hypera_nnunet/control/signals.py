"""The shared state: nnU-Net's own training signals, turned into one feature vector.

Features (all clipped to [-10, 10], non-finite values replaced by 0 with a flag):

==  ==========================================================================
0   progress, epoch / num_epochs
1   last train loss;            2  last validation loss
3   train-loss trend: last minus mean of the previous ``TREND`` epochs
4   validation-loss trend (same)
5   last pseudo-Dice (mean foreground);  6  its EMA (nnU-Net's ``ema_fg_dice``)
7   EMA trend: last minus value ``TREND`` epochs ago
8   log1p(mean gradient norm of the epoch); 9  log1p(max gradient norm)
10  gradient-norm coefficient of variation within the epoch
11  log(weight norm) / 10
12  1.0 if every loss so far is finite, else 0.0
13+ the current log-multiplier of every knob in the run, in a fixed order
==  ==========================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

TREND = 5
N_BASE_FEATURES = 13


def _last(xs: list[float], default: float = 0.0) -> float:
    return float(xs[-1]) if xs else default


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


@dataclass
class Signals:
    """What nnU-Net has logged so far, plus the gradient norms of the current epoch."""

    epoch: int
    num_epochs: int
    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    pseudo_dice: list[float] = field(default_factory=list)
    ema_dice: list[float] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    grad_norms: list[float] = field(default_factory=list)
    weight_norm: float = 1.0

    @property
    def progress(self) -> float:
        return min(1.0, self.epoch / max(1, self.num_epochs))

    @property
    def finite(self) -> bool:
        vals = self.train_losses[-1:] + self.val_losses[-1:] + self.grad_norms
        return all(math.isfinite(v) for v in vals)

    @staticmethod
    def trend(xs: list[float]) -> float:
        if len(xs) < 2:
            return 0.0
        prev = [v for v in xs[-1 - TREND:-1] if math.isfinite(v)]
        return _finite(xs[-1] - float(np.mean(prev))) if prev else 0.0

    def features(self, log_multipliers: dict[str, float], knob_order: tuple[str, ...]) -> np.ndarray:
        g = np.asarray([v for v in self.grad_norms if math.isfinite(v)], dtype=np.float64)
        g_mean = float(g.mean()) if g.size else 0.0
        g_max = float(g.max()) if g.size else 0.0
        g_cv = float(g.std() / g_mean) if g.size > 1 and g_mean > 0 else 0.0
        ema = self.ema_dice
        ema_trend = _finite(ema[-1] - ema[max(0, len(ema) - 1 - TREND)]) if len(ema) > 1 else 0.0
        base = [
            self.progress,
            _finite(_last(self.train_losses)), _finite(_last(self.val_losses)),
            self.trend(self.train_losses), self.trend(self.val_losses),
            _finite(_last(self.pseudo_dice)), _finite(_last(ema)), ema_trend,
            math.log1p(g_mean), math.log1p(g_max), g_cv,
            math.log(max(self.weight_norm, 1e-12)) / 10 if math.isfinite(self.weight_norm) else 0.0,
            1.0 if self.finite else 0.0,
        ]
        knobs = [log_multipliers.get(k, 0.0) for k in knob_order]
        return np.clip(np.asarray(base + knobs, dtype=np.float32), -10, 10)

    def summary(self) -> dict:
        return {
            "progress": round(self.progress, 4),
            "train_loss": _last(self.train_losses, float("nan")), "val_loss": _last(self.val_losses, float("nan")),
            "pseudo_dice": _last(self.pseudo_dice, float("nan")), "ema_dice": _last(self.ema_dice, float("nan")),
            "grad_norm_mean": float(np.mean(self.grad_norms)) if self.grad_norms else None,
            "grad_norm_max": float(np.max(self.grad_norms)) if self.grad_norms else None,
            "weight_norm": self.weight_norm,
        }
