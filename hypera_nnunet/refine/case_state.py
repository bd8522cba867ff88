"""The per-case state a refinement policy observes (issue 17): what one case's prediction looks like, per class.

Computed from nnU-Net's probabilities and the current segmentation only (no labels), so it is available in
inference mode. A pure function: it reads its inputs and never changes them. Per foreground class, in label order:

====================  ==================================================================================
``volume_ml``         the class's volume in ml (voxel count x voxel volume)
``n_components``      connected components (face connectivity, as nnU-Net's keep-largest)
``largest_fraction``  share of the class's voxels in its largest component (1 for one component, 0 if empty)
``second_ml``         the second-largest component's volume in ml (0 if fewer than two)
``band_p_mean``       mean probability of the class in its boundary band (the voxels within one voxel of the
                      class's surface, inside and out)
``band_entropy``      mean binary entropy (nats) of that probability in the band
``uncertain_share``   voxels with the class's probability in (0.2, 0.8), relative to the class's volume
``dist_other_mm``     shortest distance from the class to any other foreground class, in mm (``inf`` if there
                      is none)
====================  ==================================================================================

and per case: ``log_voxels`` (log of the image's voxel count) and the spacing (``spacing_0..2``, mm). An empty
class has every feature 0 except ``dist_other_mm`` (``inf``).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

UNCERTAIN = (0.2, 0.8)
CLASS_FEATURES = ("volume_ml", "n_components", "largest_fraction", "second_ml", "band_p_mean", "band_entropy",
                  "uncertain_share", "dist_other_mm")
CASE_FEATURES = ("log_voxels", "spacing_0", "spacing_1", "spacing_2")
_EPS = 1e-12


def _entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), _EPS, 1 - _EPS)
    return -(p * np.log(p) + (1 - p) * np.log(1 - p))


def _band(mask: np.ndarray) -> np.ndarray:
    """Voxels within one voxel (face neighbours) of the mask's surface, on both sides of it."""
    st = ndimage.generate_binary_structure(mask.ndim, 1)
    return ndimage.binary_dilation(mask, st) & ~ndimage.binary_erosion(mask, st, border_value=0)


def class_state(seg: np.ndarray, probs: np.ndarray, label: int, spacing) -> dict[str, float]:
    """The features of one class (see the module).

    :param seg: the current label map (Z, Y, X).
    :param probs: nnU-Net's probabilities (C, Z, Y, X), C = number of labels, background first.
    :param label: the foreground class.
    :param spacing: voxel spacing in mm, in the axis order of ``seg``.
    """
    spacing = tuple(float(s) for s in spacing)
    voxel_ml = math.prod(spacing) / 1000.0
    mask = seg == label
    n = int(mask.sum())
    comps, n_comp = ndimage.label(mask, ndimage.generate_binary_structure(mask.ndim, 1))
    sizes = np.sort(np.bincount(comps.ravel())[1:])[::-1] if n_comp else np.zeros(0, np.int64)
    p = probs[label]
    band = _band(mask)
    out = {"volume_ml": n * voxel_ml, "n_components": float(n_comp),
           "largest_fraction": float(sizes[0] / n) if n else 0.0,
           "second_ml": float(sizes[1]) * voxel_ml if n_comp > 1 else 0.0,
           "band_p_mean": float(p[band].mean()) if band.any() else 0.0,
           "band_entropy": float(_entropy(p[band]).mean()) if band.any() else 0.0,
           "uncertain_share": float(((p > UNCERTAIN[0]) & (p < UNCERTAIN[1])).sum() / n) if n else 0.0}
    others = (seg > 0) & ~mask
    if n and others.any():
        dist = ndimage.distance_transform_edt(~others, sampling=spacing)
        out["dist_other_mm"] = float(dist[mask].min())
    else:
        out["dist_other_mm"] = math.inf
    return out


def case_state(seg: np.ndarray, probs: np.ndarray, labels, spacing) -> dict[str, float]:
    """Every class's features (``<label>.<feature>``) and the case's (see the module). Inputs are not changed."""
    spacing = tuple(float(s) for s in spacing)
    out: dict[str, float] = {"log_voxels": math.log(seg.size)}
    out.update({f"spacing_{i}": s for i, s in enumerate(spacing)})
    for label in labels:
        out.update({f"{label}.{k}": v for k, v in class_state(seg, probs, int(label), spacing).items()})
    return out


def state_vector(state: dict[str, float], labels, dist_cap_mm: float = 50.0) -> np.ndarray:
    """The state as a float32 vector in a fixed order (case features, then each class's): volumes as log1p,
    distances capped at ``dist_cap_mm`` (``inf`` becomes the cap), so a policy network sees bounded inputs."""
    vals = [state[k] for k in CASE_FEATURES]
    for label in labels:
        for k in CLASS_FEATURES:
            v = state[f"{label}.{k}"]
            if k in ("volume_ml", "second_ml"):
                v = math.log1p(v)
            elif k == "dist_other_mm":
                v = min(v, dist_cap_mm)
            vals.append(v)
    return np.asarray(vals, dtype=np.float32)
