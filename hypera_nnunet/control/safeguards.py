"""Safeguards: conflict-free bounds live in the agents; here are rollback and trust.

* :class:`RollbackGuard` keeps an in-memory copy of the last good network and optimizer state.
  The snapshot owns its tensors, and a restore hands the trainer fresh copies of them: torch's
  ``Optimizer.load_state_dict`` keeps the tensors it is given on the CPU (no copy), so restoring the
  snapshot itself would let the next bad epoch write NaN into it, and every later rollback would
  restore NaN.
  An epoch is bad when a loss or gradient norm is non-finite, or when nnU-Net's pseudo-Dice EMA
  falls more than ``rollback_dice_drop`` below its best. Then the trainer's state is restored, the
  knobs are reverted and the responsible actions are penalised.
* :class:`TrustTracker` widens an agent's action box only after a record of positive rewards and
  halves it after a rollback (bounded below by ``trust_min``).
"""

from __future__ import annotations

import copy
import math
from collections import deque

import torch

from hypera_nnunet.settings import SafeguardConfig


def _to_cpu(obj):
    """A deep copy on the CPU (tensors copied even when already there)."""
    if torch.is_tensor(obj):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


class RollbackGuard:
    """Snapshot and restore of objects with ``state_dict``/``load_state_dict`` (network, optimizer)."""

    def __init__(self, targets: dict, config: SafeguardConfig) -> None:
        self.targets = targets
        self.config = config
        self.snapshot_state: dict | None = None
        self.best_ema: float | None = None
        self.rollbacks = 0

    def snapshot(self) -> None:
        self.snapshot_state = {name: _to_cpu(t.state_dict()) for name, t in self.targets.items()}

    def reason(self, finite: bool, ema: float | None) -> str | None:
        """Why this epoch should be rolled back, or None."""
        if not finite:
            return "non-finite loss or gradient"
        if ema is None or not math.isfinite(ema):
            return "non-finite pseudo-Dice"
        if self.best_ema is not None and ema < self.best_ema - self.config.rollback_dice_drop:
            return (f"pseudo-Dice EMA {ema:.4f} fell more than {self.config.rollback_dice_drop} "
                    f"below best {self.best_ema:.4f}")
        return None

    def accept(self, ema: float) -> None:
        """The epoch was good: remember its state and best EMA."""
        self.best_ema = ema if self.best_ema is None else max(self.best_ema, ema)
        self.snapshot()

    def restore(self) -> bool:
        if self.snapshot_state is None:
            return False
        for name, t in self.targets.items():
            t.load_state_dict(_to_cpu(self.snapshot_state[name]))  # a copy: the snapshot must never alias
        self.rollbacks += 1
        return True

    def state_dict(self) -> dict:
        return {"best_ema": self.best_ema, "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict) -> None:
        self.best_ema, self.rollbacks = state["best_ema"], int(state["rollbacks"])


class TrustTracker:
    """Trust in [trust_min, 1] from the mean of the last ``trust_window`` rewards."""

    def __init__(self, config: SafeguardConfig) -> None:
        self.config = config
        self.level = config.trust_init if config.trust else 1.0
        self.recent: deque[float] = deque(maxlen=config.trust_window)

    def update(self, reward: float) -> float:
        if not self.config.trust:
            return self.level
        self.recent.append(reward)
        if len(self.recent) == self.recent.maxlen:
            mean = sum(self.recent) / len(self.recent)
            step = self.config.trust_step if mean > 0 else -self.config.trust_step
            self.level = min(1.0, max(self.config.trust_min, self.level + step))
        return self.level

    def penalise(self) -> float:
        if self.config.trust:
            self.level = max(self.config.trust_min, self.level / 2)
            self.recent.clear()
        return self.level

    def state_dict(self) -> dict:
        return {"level": self.level, "recent": list(self.recent)}

    def load_state_dict(self, state: dict) -> None:
        self.level = float(state["level"])
        self.recent = deque(state["recent"], maxlen=self.config.trust_window)
