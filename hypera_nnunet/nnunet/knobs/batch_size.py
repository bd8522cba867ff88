"""``batch_size``: ``round(plans_batch * exp(x))``, clipped to ``[min_batch_size, max_batch_size]``.

Absent under DDP (per-GPU batch sizes are nnU-Net's to split). A change rebuilds the dataloaders; the
executed log-multiplier (after rounding and clipping) is returned.
"""

from __future__ import annotations

import math

import numpy as np

from hypera_nnunet.nnunet.knobs.base import Knob, register_knob
from hypera_nnunet.nnunet.pipeline import rebuild_dataloaders


@register_knob
class BatchSize(Knob):
    name = "batch_size"
    position = 3

    def detect(self, trainer) -> bool:
        if trainer.is_ddp:
            return False
        self.base = int(trainer.configuration_manager.batch_size)
        self.lo = max(1, int(self.options.get("min_batch_size", 2)))
        hi = self.options.get("max_batch_size")
        self.hi = int(hi) if hi is not None else self.base
        return True

    def apply(self, trainer, x: float) -> float:
        # x = 0 is nnU-Net's batch size, whatever the agent's bounds
        bs = self.base if x == 0.0 else int(np.clip(round(self.base * math.exp(x)), self.lo, self.hi))
        if bs != trainer.batch_size:
            trainer.batch_size = bs
            rebuild_dataloaders(trainer, "batch_size")
        return math.log(bs / self.base)

    def value(self, trainer):
        return int(trainer.batch_size)
