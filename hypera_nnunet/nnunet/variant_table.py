"""The HYPERA trainer variants as data: name -> what it changes, in configuration terms.

One change per variant, named base + change (nnU-Net's convention; a name is a results folder, so
names are permanent). The classes are written out in :mod:`.variants`; this table is what they and
``check-config``, ``trainers`` and the benchmark read, without importing torch or nnU-Net.

``overrides`` is merged onto :data:`BASE_CONFIG` with the configuration's own merge rule (a mapping
merges, a list replaces), exactly as a ``HYPERA_CONFIG`` file is merged onto the variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypera_nnunet.nnunet.budget import parse_budget

ALL_AGENTS = ("learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization")
TRANSFER_ENV = "HYPERA_TRANSFER"
BASELINE = "nnUNetTrainer"
SEEDABLE_BASELINE = "nnUNetTrainerSeedable"  # nnU-Net's trainer at its full budget, seeded with $HYPERA_SEED
#: nnU-Net's trainer (no agents) with the nnunet: section of $HYPERA_CONFIG: a search's trials, its export
CONFIGURED_BASELINE = "nnUNetTrainerConfigured"
#: HyperaTrainer's configuration (on top of the settings' defaults): all six agents.
BASE_CONFIG: dict = {"agents": list(ALL_AGENTS)}


@dataclass(frozen=True)
class Variant:
    """:param doc: one line for ``hypera-nnunet trainers``.
    :param overrides: configuration merged onto :data:`BASE_CONFIG`.
    :param transfer_mode: ``warm_start`` / ``frozen``: policies come from ``$HYPERA_TRANSFER`` at run time."""

    doc: str
    overrides: dict = field(default_factory=dict)
    transfer_mode: str | None = None


VARIANTS: dict[str, Variant] = {
    "HyperaTrainer": Variant("All six agents (learning rate, loss weights, batch size, augmentation, "
                             "regularization, optimizer) under one coordinator."),
    "HyperaTrainer_LR": Variant("Only the learning-rate agent.", {"agents": ["learning_rate"]}),
    "HyperaTrainer_Loss": Variant("Only the loss-weight agent.", {"agents": ["loss"]}),
    "HyperaTrainer_BatchSize": Variant("Only the batch-size agent.", {"agents": ["batch_size"]}),
    "HyperaTrainer_Aug": Variant("Only the augmentation agent.", {"agents": ["augmentation"]}),
    "HyperaTrainer_Reg": Variant("Only the regularization agent.", {"agents": ["regularization"]}),
    "HyperaTrainer_Optim": Variant("Only the optimizer (momentum, Nesterov) agent.", {"agents": ["optimization"]}),
    "HyperaTrainer_LRLoss": Variant("Learning-rate and loss-weight agents.", {"agents": ["learning_rate", "loss"]}),
    "HyperaTrainer_Shadow": Variant("All agents decide and log; nothing is applied (the control run).",
                                    {"shadow": True}),
    "HyperaTrainer_NoRollback": Variant("All agents, rollback off.", {"safeguards": {"rollback": False}}),
    "HyperaTrainer_NoTrust": Variant("All agents, full bounds from the start.", {"safeguards": {"trust": False}}),
    "HyperaTrainer_Priority": Variant("All agents, 'priority' conflict strategy.", {"strategy": "priority"}),
    "HyperaTrainer_Consensus": Variant("All agents, 'consensus' conflict strategy.", {"strategy": "consensus"}),
    "HyperaTrainer_WarmStart": Variant(f"All agents, warm start from the policies in ${TRANSFER_ENV}.",
                                       transfer_mode="warm_start"),
    "HyperaTrainer_Frozen": Variant(f"All agents, frozen from the policies in ${TRANSFER_ENV}.",
                                    transfer_mode="frozen"),
}


def hypera_variant_of(name: str) -> str | None:
    """The table entry behind a HYPERA trainer name (``HyperaTrainer_Shadow_10epochs_25iters`` ->
    ``HyperaTrainer_Shadow``), or None if ``name`` is not a HYPERA trainer."""
    if name in VARIANTS:
        return name
    b = parse_budget(name)
    return b.base if b is not None and b.base in VARIANTS else None


def is_hypera_name(name: str) -> bool:
    """Whether this package defines a trainer of this name (a HYPERA variant, a budget of one, or a
    ``nnUNetTrainer_<E>epochs_<I>iters`` baseline), answered without importing torch or nnU-Net."""
    if hypera_variant_of(name) is not None or name in (SEEDABLE_BASELINE, CONFIGURED_BASELINE):
        return True
    b = parse_budget(name)
    return b is not None and ((b.base == BASELINE and b.iters is not None) or b.base == CONFIGURED_BASELINE)


def reads_config_file(name: str) -> bool:
    """Whether a trainer of this name reads ``$HYPERA_CONFIG`` (a HYPERA variant, or nnUNetTrainerConfigured and
    its budgets), answered without importing torch or nnU-Net."""
    if hypera_variant_of(name) is not None or name == CONFIGURED_BASELINE:
        return True
    b = parse_budget(name)
    return b is not None and b.base == CONFIGURED_BASELINE
