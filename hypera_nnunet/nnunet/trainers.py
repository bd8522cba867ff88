"""The HYPERA trainers, where nnU-Net finds them (``nnUNet_extTrainer`` re-exports this module).

The 15 variants are importable names here; every budget variant (``HyperaTrainer_Shadow_10epochs_25iters``,
``nnUNetTrainer_50epochs_25iters``, ...) is built by the module ``__getattr__`` on first use, which is all
nnU-Net's ``hasattr(module, name)`` lookup and pickle need. ``HYPERA_CONFIG=/path/config.{json,yaml}`` is
merged onto a variant's configuration (:func:`hypera_nnunet.config.run_config`).
"""

from __future__ import annotations

from hypera_nnunet.nnunet.variants import (  # noqa: F401 (the names nnU-Net looks up)
    CLASSES,
    HyperaTrainer,
    HyperaTrainer_Aug,
    HyperaTrainer_BatchSize,
    HyperaTrainer_Consensus,
    HyperaTrainer_Frozen,
    HyperaTrainer_Loss,
    HyperaTrainer_LR,
    HyperaTrainer_LRLoss,
    HyperaTrainer_NoRollback,
    HyperaTrainer_NoTrust,
    HyperaTrainer_Optim,
    HyperaTrainer_Priority,
    HyperaTrainer_Reg,
    HyperaTrainer_Shadow,
    HyperaTrainer_WarmStart,
    budget_class,
    nnUNetTrainerConfigured,
    nnUNetTrainerSeedable,
)

__all__ = [*CLASSES, "nnUNetTrainerSeedable", "nnUNetTrainerConfigured"]


def __getattr__(name: str):
    cls = budget_class(name)
    if cls is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return cls
