"""Segmentation agents: refine nnU-Net's predictions from the softmax probabilities it saves.

``refine fit`` learns, per class, a chain of bounded actions from five agents on nnU-Net's
cross-validation predictions (rewards from the labels); ``refine apply`` runs the accepted chains on any
prediction folder (no labels, deterministic). A refinement is kept for a class only if it raises that
class's cross-validated Dice and lowers no other class's, as nnU-Net accepts its own postprocessing.

Modules: :mod:`.ops` (the pure transforms), :mod:`.agents`, :mod:`.reward`, :mod:`.search` (CEM),
:mod:`.coordinator`, :mod:`.metrics` (Dice, HD95, NSD), :mod:`.io`, :mod:`.fit`, :mod:`.apply`,
:mod:`.postprocessing` (nnU-Net postprocessing functions), :mod:`.cli`.
"""

from hypera_nnunet.refine.agents import (
    BoundaryAgent,
    FGBalanceAgent,
    ObjectAgent,
    RegionAgent,
    ShapeAgent,
)
from hypera_nnunet.refine.coordinator import SegmentationAgentCoordinator
from hypera_nnunet.refine.reward import AdaptiveWeightManager, RewardWeights

__all__ = ["BoundaryAgent", "FGBalanceAgent", "ObjectAgent", "RegionAgent", "ShapeAgent",
           "SegmentationAgentCoordinator", "AdaptiveWeightManager", "RewardWeights"]
