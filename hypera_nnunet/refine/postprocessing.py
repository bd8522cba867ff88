"""The segmentation-only part of the refinement as nnU-Net postprocessing functions.

nnU-Net's ``postprocessing.pkl`` holds ``(functions, kwargs)``: two lists, applied in order as
``segmentation = fn(segmentation, **kwargs)`` by ``nnUNetv2_apply_postprocessing`` (and by
``nnUNetv2_predict`` users who apply it). Only agents that need no probabilities fit that mould:
:class:`~hypera_nnunet.refine.agents.ShapeAgent` and :class:`~hypera_nnunet.refine.agents.ObjectAgent`.
``refine fit --agents shape object`` writes such a pickle next to the refiner; applying it with nnU-Net
gives exactly the label maps that ``refine apply`` gives with that refiner.

The functions are importable as ``hypera_nnunet.refine.postprocessing.<name>`` (the pickle stores that
path), and re-exported from the repository's ``postprocessing/`` folder.
"""

from __future__ import annotations

import numpy as np

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.agents import ObjectAgent, ObjectParams, ShapeAgent, ShapeParams
from hypera_nnunet.refine.ops import removes_too_much

__all__ = ["refine_shape", "refine_objects", "policies_to_postprocessing"]


def _guarded(segmentation: np.ndarray, new: np.ndarray, label: int, max_removed_fraction: float) -> np.ndarray:
    if removes_too_much(segmentation, new, label, max_removed_fraction):
        return np.array(segmentation, copy=True)
    return new


def refine_shape(segmentation: np.ndarray, label: int, fill_holes: bool = False, close_radius: int = 0,
                 open_radius: int = 0, compactness: int = 0, max_removed_fraction: float = 1.0) -> np.ndarray:
    """ShapeAgent for one label: closing, hole filling, opening, neighbour-vote compactness (voxel units).
    Unchanged if it would remove more than ``max_removed_fraction`` of the label (the removal guard)."""
    params = ShapeParams(fill_holes=fill_holes, close_radius=close_radius, open_radius=open_radius,
                         compactness=compactness)
    seg = np.asarray(segmentation)
    return _guarded(seg, ShapeAgent().act(seg, None, label=int(label), params=params), int(label),
                    max_removed_fraction)


def refine_objects(segmentation: np.ndarray, label: int, min_size_voxels: int = 0, keep_largest: bool = False,
                   connectivity: int = 1, max_removed_fraction: float = 1.0) -> np.ndarray:
    """ObjectAgent for one label: drop components below ``min_size_voxels`` or all but the largest.
    Unchanged if it would remove more than ``max_removed_fraction`` of the label (the removal guard)."""
    params = ObjectParams(min_size_voxels=min_size_voxels, keep_largest=keep_largest, connectivity=connectivity)
    seg = np.asarray(segmentation)
    return _guarded(seg, ObjectAgent().act(seg, None, label=int(label), params=params), int(label),
                    max_removed_fraction)


_FUNCTIONS = {"shape": refine_shape, "object": refine_objects}


def policies_to_postprocessing(coord) -> tuple[list, list[dict]]:
    """A fitted coordinator's policies as nnU-Net's ``(pp_fns, pp_fn_kwargs)``; segmentation-only only."""
    fns, kwargs = [], []
    for label in sorted(coord.policies):
        for action in coord.policies[label].actions:
            if action.agent not in _FUNCTIONS:
                raise HyperaError(f"class {label} uses agent '{action.agent}', which needs nnU-Net's probabilities; "
                                  "only shape and object actions can be nnU-Net postprocessing")
            fns.append(_FUNCTIONS[action.agent])
            kwargs.append({"label": int(label), **action.params.to_dict(),
                           "max_removed_fraction": coord.max_removed_fraction})
    return fns, kwargs
