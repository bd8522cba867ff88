"""Short-budget trainer names in nnU-Net's naming (``<Base>_<E>epochs``, ``<Base>_<E>epochs_<I>iters``).

nnU-Net ships ``nnUNetTrainer_<E>epochs``. CPU runs also need fewer iterations per epoch, so the
``_<I>iters`` variants set ``num_iterations_per_epoch = I`` and ``num_val_iterations_per_epoch =
max(2, I // 5)`` (nnU-Net's own 250:50 ratio). A trainer's name is its results folder, so these
names and budgets are permanent. This module only parses names; :mod:`.trainers` builds the classes
on first use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EPOCHS = (1, 2, 3, 5, 10, 20, 30, 40, 50, 60, 100)
ITERS = (5, 10, 20, 25, 50)
_BUDGET = re.compile(r"^(?P<base>.+?)_(?P<epochs>\d+)epochs(?:_(?P<iters>\d+)iters)?$")


def val_iterations(iters: int) -> int:
    """Validation iterations for ``iters`` training iterations per epoch (nnU-Net's 250:50 ratio, at least 2)."""
    return max(2, iters // 5)


@dataclass(frozen=True)
class Budget:
    """A budget variant's name split into its base trainer and its budget."""

    base: str
    epochs: int
    iters: int | None

    @property
    def name(self) -> str:
        return f"{self.base}_{self.epochs}epochs" + (f"_{self.iters}iters" if self.iters is not None else "")


def parse_budget(name: str) -> Budget | None:
    """``Budget`` for a registered budget name (E in :data:`EPOCHS`, I in :data:`ITERS`), else None.

    Only the suffix is checked here; whether the base is a known trainer is the caller's question."""
    m = _BUDGET.match(name)
    if m is None:
        return None
    epochs, iters = int(m["epochs"]), (int(m["iters"]) if m["iters"] else None)
    if epochs not in EPOCHS or (iters is not None and iters not in ITERS):
        return None
    return Budget(m["base"], epochs, iters)
