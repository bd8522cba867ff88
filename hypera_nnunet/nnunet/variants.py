"""The HYPERA trainer variants, written out (greppable), and their budget variants, built on first use.

One change per variant, named base + change; the change itself is data in :mod:`.variant_table`
(``hypera_variant`` names the entry). A name is a results folder, so names are permanent.

Budgets (``<Variant>_<E>epochs``, ``<Variant>_<E>epochs_<I>iters``, and the baselines
``nnUNetTrainer_<E>epochs_<I>iters``) are made by :func:`budget_class` when first asked for:
:mod:`.trainers` answers nnU-Net's ``hasattr(module, name)`` lookup through a module ``__getattr__``,
so importing it builds 15 classes, not 950.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from hypera_nnunet.errors import HyperaError, exit_with_error
from hypera_nnunet.nnunet.budget import parse_budget, val_iterations
from hypera_nnunet.nnunet.experience import StoreBaseline
from hypera_nnunet.nnunet.hyperparameters import EpochRecord, NNUNetHyperparameters
from hypera_nnunet.nnunet.plotting import ThinPlots
from hypera_nnunet.nnunet.run_schedule import RunSchedule
from hypera_nnunet.nnunet.seeding import SeededTraining
from hypera_nnunet.nnunet.timing import PhaseTiming
from hypera_nnunet.nnunet.trainer import HyperaTrainer
from hypera_nnunet.nnunet.variant_table import BASELINE, CONFIGURED_BASELINE, VARIANTS

PUBLIC_MODULE = "hypera_nnunet.nnunet.trainers"  # where the classes are found and pickled


class nnUNetTrainerSeedable(StoreBaseline, EpochRecord, ThinPlots, PhaseTiming, SeededTraining, nnUNetTrainer):
    """nnU-Net's trainer, unchanged unless ``$HYPERA_SEED`` is set: then seeded, with atomic checkpoints that
    carry the generators' states (the base of the ``nnUNetTrainer_<E>epochs_<I>iters`` baselines). Each epoch gets a
    line in ``fold_X/epochs.jsonl`` with where its time went (:mod:`.timing`), and a seeded run writes its curve to
    the experience store ``$HYPERA_STORE`` (:mod:`.experience`); nothing else changes."""


class nnUNetTrainerConfigured(RunSchedule, NNUNetHyperparameters, EpochRecord, ThinPlots, PhaseTiming,
                              SeededTraining, nnUNetTrainer):
    """nnU-Net's trainer without agents, with nnU-Net's hyperparameters from the ``nnunet:`` section of
    ``$HYPERA_CONFIG`` (and its ``save_every``), seeded by ``$HYPERA_SEED``; the trainer of a search's trials
    (``hypera-nnunet search``) and of the configuration a search exports. Without the variable: nnU-Net's values."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        from hypera_nnunet.config import run_config

        try:  # the whole file is checked, before any data is loaded; nnunet, schedule, store and save_every act
            cfg = run_config("HyperaTrainer")
        except HyperaError as e:
            exit_with_error(e)
        self._run_cfg = cfg
        if cfg.save_every:
            self.save_every = int(cfg.save_every)

    def nnunet_settings(self):
        return self._run_cfg.nnunet

    def run_configuration(self):
        return self._run_cfg

    def set_run_configuration(self, cfg) -> None:
        self._run_cfg = cfg


class HyperaTrainer_LR(HyperaTrainer):
    hypera_variant = "HyperaTrainer_LR"


class HyperaTrainer_Loss(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Loss"


class HyperaTrainer_BatchSize(HyperaTrainer):
    hypera_variant = "HyperaTrainer_BatchSize"


class HyperaTrainer_Aug(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Aug"


class HyperaTrainer_Reg(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Reg"


class HyperaTrainer_Optim(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Optim"


class HyperaTrainer_LRLoss(HyperaTrainer):
    hypera_variant = "HyperaTrainer_LRLoss"


class HyperaTrainer_Shadow(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Shadow"


class HyperaTrainer_NoRollback(HyperaTrainer):
    hypera_variant = "HyperaTrainer_NoRollback"


class HyperaTrainer_NoTrust(HyperaTrainer):
    hypera_variant = "HyperaTrainer_NoTrust"


class HyperaTrainer_Priority(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Priority"


class HyperaTrainer_Consensus(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Consensus"


class HyperaTrainer_WarmStart(HyperaTrainer):
    hypera_variant = "HyperaTrainer_WarmStart"


class HyperaTrainer_Frozen(HyperaTrainer):
    hypera_variant = "HyperaTrainer_Frozen"


CLASSES: dict[str, type] = {c.__name__: c for c in (
    HyperaTrainer, HyperaTrainer_LR, HyperaTrainer_Loss, HyperaTrainer_BatchSize, HyperaTrainer_Aug,
    HyperaTrainer_Reg, HyperaTrainer_Optim, HyperaTrainer_LRLoss, HyperaTrainer_Shadow, HyperaTrainer_NoRollback,
    HyperaTrainer_NoTrust, HyperaTrainer_Priority, HyperaTrainer_Consensus, HyperaTrainer_WarmStart,
    HyperaTrainer_Frozen)}
assert set(CLASSES) == set(VARIANTS), "variants.py and variant_table.py disagree"
for _name, _cls in CLASSES.items():
    _cls.__doc__ = VARIANTS[_name].doc
    _cls.__module__ = PUBLIC_MODULE
nnUNetTrainerSeedable.__module__ = PUBLIC_MODULE
nnUNetTrainerConfigured.__module__ = PUBLIC_MODULE

_BUDGETS: dict[str, type] = {}


def budget_class(name: str) -> type | None:
    """The class for a budget name (built once, then cached), or None if ``name`` is none."""
    if name in _BUDGETS:
        return _BUDGETS[name]
    b = parse_budget(name)
    if b is None:
        return None
    if b.base in CLASSES:
        base = CLASSES[b.base]
    elif b.base == BASELINE and b.iters is not None:  # nnUNetTrainer_<E>epochs are nnU-Net's own
        base = nnUNetTrainerSeedable
    elif b.base == CONFIGURED_BASELINE:
        base = nnUNetTrainerConfigured
    else:
        return None
    epochs, iters = b.epochs, b.iters

    # nnU-Net records __init__'s arguments through inspect.signature + locals(): keep it explicit.
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = epochs
        if iters is not None:
            self.num_iterations_per_epoch = iters
            self.num_val_iterations_per_epoch = val_iterations(iters)

    doc = f"{base.__name__} for {epochs} epochs" + (f" of {iters} iterations" if iters else "") + "."
    cls = type(name, (base,), {"__init__": __init__, "__doc__": doc, "__module__": PUBLIC_MODULE})
    cls.__qualname__ = name
    _BUDGETS[name] = cls
    return cls
