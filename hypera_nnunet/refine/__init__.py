"""Refinement of nnU-Net's predictions from the softmax probabilities it saves.

``refine fit`` tunes, per class, a chain of parameterised postprocessing steps (five of them, each a
bounded parameter vector, tuned by the cross-entropy method) on nnU-Net's cross-validation predictions,
with rewards from the labels; ``refine apply`` runs the accepted chains on any prediction folder (no
labels, deterministic). A chain is kept for a class only if it raises that class's cross-validated Dice
and lowers no other class's, as nnU-Net accepts its own postprocessing.

Modules: :mod:`.ops` (the pure transforms), :mod:`.steps` (the tunable steps), :mod:`.reward`,
:mod:`.search` (CEM), :mod:`.refiner`, :mod:`.metrics` (Dice, HD95, NSD), :mod:`.io`, :mod:`.fit`,
:mod:`.apply`, :mod:`.postprocessing` (nnU-Net postprocessing functions), :mod:`.cli`.
"""

from hypera_nnunet.refine.refiner import Refiner
from hypera_nnunet.refine.reward import AdaptiveWeightManager, RewardWeights
from hypera_nnunet.refine.steps import (
    BoundaryLevelStep,
    ComponentFilterStep,
    ForegroundPriorStep,
    MorphologyStep,
    ThresholdGrowStep,
)

__all__ = ["BoundaryLevelStep", "ComponentFilterStep", "ForegroundPriorStep", "MorphologyStep", "ThresholdGrowStep",
           "Refiner", "AdaptiveWeightManager", "RewardWeights"]
