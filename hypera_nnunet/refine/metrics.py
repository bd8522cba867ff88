"""Dice, HD95 and normalised surface Dice (NSD) per class, in millimetres on the voxel spacing.

Definitions (the same as nnU-Net's Dice; refinement's fit and acceptance use these functions; the benchmark
report's NSD is MONAI's surfel-area definition, the one challenges publish, which this voxel-count NSD is *not*:
it equals MONAI's ``compute_surface_dice(..., use_subvoxels=False)``, cross-checked in
``tests/benchmark/test_bench_surface.py``):

* **Dice** = 2|P∩R| / (|P| + |R|), NaN when both masks are empty (nnU-Net's convention; means use nanmean).
* **surface voxels** of a mask: the mask minus its erosion by the 6-neighbourhood. Outside the image counts as
  background, so a mask that touches the image border has a surface there.
* **distances**: from each surface voxel of one mask to the nearest surface voxel of the other, between voxel
  centres, in mm: ``scipy.ndimage.distance_transform_edt(~surface, sampling=spacing)``.
* **HD95**: the larger of the two directed 95th percentiles (P→R and R→P; numpy's linear interpolation).
* **NSD at tolerance τ mm**: (surface voxels of P within τ of S(R) + surface voxels of R within τ of S(P)) /
  (|S(P)| + |S(R)|), a voxel-count version of Nikolov et al.'s surface Dice. The default τ is
  :data:`DEFAULT_NSD_TOLERANCE_MM` = 1.0 mm (one voxel on Hippocampus).

Empty masks: both empty, HD95 and NSD are NaN. Exactly one empty: NSD = 0 and HD95 = NaN (reported and
counted separately, never replaced by an arbitrary distance).

The distance transforms run on the bounding box of both surfaces plus one voxel, which gives exactly the
full-volume values (every surface voxel lies inside the box) at a fraction of the cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

DEFAULT_NSD_TOLERANCE_MM = 1.0


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks; NaN when both are empty."""
    tp = int(np.count_nonzero(pred & ref))
    denom = int(np.count_nonzero(pred)) + int(np.count_nonzero(ref))
    return math.nan if denom == 0 else 2.0 * tp / denom


def surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its 6-neighbourhood erosion (outside the image is background)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    coords = np.nonzero(mask)
    return tuple(slice(max(int(c.min()) - margin, 0), min(int(c.max()) + margin + 1, s))
                 for c, s in zip(coords, mask.shape))


def distances_to_surface(surf: np.ndarray, spacing) -> np.ndarray:
    """Distance (mm) from every voxel to the nearest voxel of ``surf`` (which must be non-empty)."""
    return ndimage.distance_transform_edt(~surf, sampling=tuple(float(s) for s in spacing))


def directed_distances(from_surf: np.ndarray, to_surf: np.ndarray, spacing) -> np.ndarray:
    """Distances (mm) from each voxel of ``from_surf`` to the nearest voxel of ``to_surf``.

    Computed in the bounding box of both surfaces (exact: all voxels involved are inside it).
    """
    box = _bbox(from_surf | to_surf)
    dt = distances_to_surface(to_surf[box], spacing)
    return dt[from_surf[box]]


@dataclass(frozen=True)
class SurfaceScores:
    hd95: float
    nsd: float


def surface_scores_from_distances(d_pr: np.ndarray, d_rp: np.ndarray, tolerance_mm: float) -> SurfaceScores:
    """HD95 and NSD from the two sets of directed distances (see the module docstring)."""
    n_p, n_r = d_pr.size, d_rp.size
    if n_p == 0 and n_r == 0:
        return SurfaceScores(math.nan, math.nan)
    if n_p == 0 or n_r == 0:
        return SurfaceScores(math.nan, 0.0)
    hd95 = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    within = int(np.count_nonzero(d_pr <= tolerance_mm)) + int(np.count_nonzero(d_rp <= tolerance_mm))
    return SurfaceScores(hd95, within / (n_p + n_r))


def surface_scores(pred: np.ndarray, ref: np.ndarray, spacing,
                   tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> SurfaceScores:
    """HD95 (mm) and NSD at ``tolerance_mm`` of two boolean masks of the same shape."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for a {pred.ndim}-D mask")
    sp, sr = surface(pred), surface(ref)
    if not sp.any() or not sr.any():
        return SurfaceScores(math.nan, math.nan if not (sp.any() or sr.any()) else 0.0)
    return surface_scores_from_distances(directed_distances(sp, sr, spacing), directed_distances(sr, sp, spacing),
                                         tolerance_mm)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    """95th-percentile Hausdorff distance in mm (NaN if either mask is empty)."""
    return surface_scores(pred, ref, spacing).hd95


def nsd(pred: np.ndarray, ref: np.ndarray, spacing, tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> float:
    """Normalised surface Dice at ``tolerance_mm`` (0 if exactly one mask is empty, NaN if both are)."""
    return surface_scores(pred, ref, spacing, tolerance_mm).nsd


def class_metrics(seg: np.ndarray, ref: np.ndarray, labels, spacing,
                  tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> dict[int, dict[str, float]]:
    """``{label: {"Dice", "HD95", "NSD"}}`` for each label of two label maps."""
    out = {}
    for lab in labels:
        p, r = seg == lab, ref == lab
        s = surface_scores(p, r, spacing, tolerance_mm)
        out[int(lab)] = {"Dice": dice(p, r), "HD95": s.hd95, "NSD": s.nsd}
    return out


def nanmean(values) -> float:
    """Mean ignoring NaN; NaN when there is nothing to average (no warning)."""
    arr = np.asarray(list(values), dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else math.nan
