"""Short-budget trainer variants in nnU-Net's naming (``<Base>_<E>epochs``, ``<Base>_<E>epochs_<I>iters``).

nnU-Net ships ``nnUNetTrainer_<E>epochs``. CPU runs also need fewer iterations per epoch, so the
``_<I>iters`` variants set ``num_iterations_per_epoch = I`` and ``num_val_iterations_per_epoch =
max(2, I // 5)`` (nnU-Net's own 250:50 ratio). A trainer's name is its results folder, so these
names and budgets are permanent.
"""

from __future__ import annotations

import sys

import torch

EPOCHS = (1, 2, 3, 5, 10, 20, 30, 40, 50, 100)
ITERS = (5, 10, 20, 25, 50)


def val_iterations(iters: int) -> int:
    return max(2, iters // 5)


def make_budget_variant(base: type, epochs: int, iters: int | None, module: str) -> type:
    """A subclass of ``base`` with a fixed budget, registered in ``module`` so that it pickles."""
    name = f"{base.__name__}_{epochs}epochs" + (f"_{iters}iters" if iters is not None else "")

    # nnU-Net records __init__'s arguments through inspect.signature + locals(): keep it explicit.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iters is not None:
            self.num_iterations_per_epoch = iters
            self.num_val_iterations_per_epoch = val_iterations(iters)

    doc = f"{base.__name__} for {epochs} epochs" + (f" of {iters} iterations" if iters else "") + "."
    cls = type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": module})
    cls.__qualname__ = name
    setattr(sys.modules[module], name, cls)
    return cls


def register_budget_variants(base: type, module: str, with_plain_epochs: bool = True) -> list[str]:
    names = []
    for e in EPOCHS:
        if with_plain_epochs:
            names.append(make_budget_variant(base, e, None, module).__name__)
        for i in ITERS:
            names.append(make_budget_variant(base, e, i, module).__name__)
    return names
