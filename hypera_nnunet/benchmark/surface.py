"""Surface metrics per label: HD95 and normalised surface Dice (NSD), in millimetres on the voxel spacing.

Definitions (stated in the report):

* surface voxels of a mask: the mask minus its erosion by the 6-neighbourhood (the image border counts as
  outside, so a mask touching the border has a surface there);
* distances: Euclidean distance transform (``scipy.ndimage.distance_transform_edt``) of the complement of
  the other mask's surface, with ``sampling`` = voxel spacing (mm);
* HD95: the larger of the two directed 95th percentiles (prediction→reference, reference→prediction);
* NSD at tolerance τ: (surface voxels of P within τ of S(R) + surface voxels of R within τ of S(P)) /
  (|S(P)| + |S(R)|), a voxel-count version of Nikolov et al.'s surface Dice.

Both undefined (NaN) when both masks are empty; when exactly one is empty, NSD = 0 and HD95 = NaN (counted
separately in the report rather than replaced by an arbitrary large distance).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import ndimage

from hypera_nnunet.errors import HyperaError


def surface(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(bool)
    if not mask.any():
        return mask
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def _distances_to(surf: np.ndarray, spacing) -> np.ndarray:
    return ndimage.distance_transform_edt(~surf, sampling=spacing)


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing, tolerance_mm: float = 1.0) -> tuple[float, float]:
    """(HD95 mm, NSD at ``tolerance_mm``) for two boolean masks of the same shape."""
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference shape {ref.shape}")
    sp, sr = surface(pred), surface(ref)
    n_p, n_r = int(sp.sum()), int(sr.sum())
    if n_p == 0 and n_r == 0:
        return math.nan, math.nan
    if n_p == 0 or n_r == 0:
        return math.nan, 0.0
    d_pr = _distances_to(sr, spacing)[sp]
    d_rp = _distances_to(sp, spacing)[sr]
    hd95 = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    nsd = float(((d_pr <= tolerance_mm).sum() + (d_rp <= tolerance_mm).sum()) / (n_p + n_r))
    return hd95, nsd


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    if not Path(path).is_file():
        raise HyperaError(f"{path} does not exist (needed for HD95/NSD).")
    img = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing()[::-1])


def case_surface_metrics(prediction_file: Path, reference_file: Path, labels, tolerance_mm: float = 1.0) -> dict:
    """``{label: {"HD95": mm, "NSD": fraction}}`` for one case read from disk (spacing from the reference)."""
    pred, _ = _read(prediction_file)
    ref, spacing = _read(reference_file)
    out = {}
    for lab in labels:
        v = int(lab)
        hd, nsd = surface_metrics(pred == v, ref == v, spacing, tolerance_mm)
        out[str(lab)] = {"HD95": hd, "NSD": nsd}
    return out
