"""The segmentation-only refinement steps as nnU-Net postprocessing functions.

nnU-Net's ``postprocessing.pkl`` holds ``(functions, kwargs)``: two lists, applied in order as
``segmentation = fn(segmentation, **kwargs)`` by ``nnUNetv2_apply_postprocessing`` (and by
``nnUNetv2_predict`` users who apply it). Only steps that need no probabilities fit that mould:
:class:`~hypera_nnunet.refine.steps.MorphologyStep` and :class:`~hypera_nnunet.refine.steps.ComponentFilterStep`.
``refine fit --steps morphology components`` writes such a pickle next to the refiner; applying it with
nnU-Net gives exactly the label maps that ``refine apply`` gives with that refiner.

The pickle is nnU-Net's format, read by nnU-Net with ``pickle.load`` (so, like any ``postprocessing.pkl``, it
should only be applied when it comes from someone you trust); ``refine apply`` never reads it, it reads the
JSON refiner. The functions are importable as ``hypera_nnunet.refine.postprocessing.<name>`` (the pickle
stores that path, so the names ``refine_shape`` and ``refine_objects`` stay as pickles already written name
them), and re-exported from the repository's ``postprocessing/`` folder.
"""

from __future__ import annotations

import numpy as np

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.ops import removes_too_much
from hypera_nnunet.refine.steps import (
    ComponentFilterStep,
    ComponentParams,
    MorphologyParams,
    MorphologyStep,
    params_dict,
)

__all__ = ["refine_shape", "refine_objects", "chains_to_postprocessing"]


def _guarded(segmentation: np.ndarray, new: np.ndarray, label: int, max_removed_fraction: float) -> np.ndarray:
    if removes_too_much(segmentation, new, label, max_removed_fraction):
        return np.array(segmentation, copy=True)
    return new


def refine_shape(segmentation: np.ndarray, label: int, fill_holes: bool = False, close_radius: int = 0,
                 open_radius: int = 0, compactness: int = 0, max_removed_fraction: float = 1.0) -> np.ndarray:
    """The morphology step for one label: closing, hole filling, opening, neighbour-vote compactness (voxel
    units). Unchanged if it would remove more than ``max_removed_fraction`` of the label (the removal guard)."""
    params = MorphologyParams(fill_holes=fill_holes, close_radius=close_radius, open_radius=open_radius,
                              compactness=compactness)
    seg = np.asarray(segmentation)
    return _guarded(seg, MorphologyStep().act(seg, None, label=int(label), params=params), int(label),
                    max_removed_fraction)


def refine_objects(segmentation: np.ndarray, label: int, min_size_voxels: int = 0, keep_largest: bool = False,
                   connectivity: int = 1, max_removed_fraction: float = 1.0) -> np.ndarray:
    """The component filter for one label: drop components below ``min_size_voxels`` or all but the largest.
    Unchanged if it would remove more than ``max_removed_fraction`` of the label (the removal guard)."""
    params = ComponentParams(min_size_voxels=min_size_voxels, keep_largest=keep_largest, connectivity=connectivity)
    seg = np.asarray(segmentation)
    return _guarded(seg, ComponentFilterStep().act(seg, None, label=int(label), params=params), int(label),
                    max_removed_fraction)


_FUNCTIONS = {MorphologyStep.name: refine_shape, ComponentFilterStep.name: refine_objects}


def chains_to_postprocessing(refiner) -> tuple[list, list[dict]]:
    """A fitted refiner's chains as nnU-Net's ``(pp_fns, pp_fn_kwargs)``; segmentation-only steps only. A
    refiner that starts from nnU-Net's postprocessing (:mod:`.start`) has that chain first.

    :param refiner: a :class:`~hypera_nnunet.refine.refiner.Refiner`.
    """
    from hypera_nnunet.refine.start import _call_kwargs

    fns = [st.function() for st in refiner.start]
    kwargs = [_call_kwargs(st) for st in refiner.start]
    for label in sorted(refiner.chains):
        for tuned in refiner.chains[label].steps:
            if tuned.step not in _FUNCTIONS:
                raise HyperaError(f"class {label} uses step '{tuned.step}', which needs nnU-Net's probabilities; "
                                  f"only {' and '.join(_FUNCTIONS)} steps can be nnU-Net postprocessing")
            fns.append(_FUNCTIONS[tuned.step])
            kwargs.append({"label": int(label), **params_dict(tuned.params),
                           "max_removed_fraction": refiner.max_removed_fraction})
    return fns, kwargs
