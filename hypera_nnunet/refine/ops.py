"""The refiners: pure transforms ``(seg, probs) -> seg`` for one class of a label map.

Every function here returns a new array and never writes to its inputs (tests pass read-only arrays).
``seg`` is an integer label map (Z, Y, X); ``probs`` is nnU-Net's softmax, one channel per label value
(channel ``k`` is label ``k``; nnU-Net's labels are consecutive from 0), shape (C, Z, Y, X).

Two rules keep the transforms local to the class they act on:

* a voxel is **added** to class ``c`` only if it is background now (the probability-driven
  :func:`refine_boundary` is the one exception: it may move the border between two classes);
* a voxel **removed** from ``c`` goes to background in the segmentation-only transforms (as nnU-Net's own
  postprocessing does), and to the most probable other class in the probability-driven ones.

Parameters in voxels (radii, component sizes, neighbour counts) are voxel units, as in nnU-Net's
postprocessing; the smoothing width is in millimetres on the voxel spacing.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_EPS = 1e-6


def _check(seg: np.ndarray, probs: np.ndarray | None, label: int) -> None:
    if seg.ndim != 3:
        raise ValueError(f"expected a 3-D label map, got shape {seg.shape}")
    if label <= 0:
        raise ValueError(f"label must be a foreground label (> 0), got {label}")
    if probs is not None:
        if probs.shape[1:] != seg.shape:
            raise ValueError(f"probabilities of shape {probs.shape} do not match the label map {seg.shape}")
        if label >= probs.shape[0]:
            raise ValueError(f"label {label} has no probability channel (only {probs.shape[0]} channels)")


def ball(radius: int) -> np.ndarray:
    """A digital ball of ``radius`` voxels (radius 1 is the 6-neighbourhood cross)."""
    r = int(radius)
    z, y, x = np.ogrid[-r:r + 1, -r:r + 1, -r:r + 1]
    return (z * z + y * y + x * x) <= r * r


def top_foreground(probs: np.ndarray, label: int) -> np.ndarray:
    """Where ``label`` is at least as probable as every other foreground label (ties count as top)."""
    if probs.shape[0] <= 2:
        return np.ones(probs.shape[1:], dtype=bool)
    others = [k for k in range(1, probs.shape[0]) if k != label]
    return probs[label] >= probs[others].max(axis=0)


def best_other_label(probs: np.ndarray, label: int, where: np.ndarray) -> np.ndarray:
    """For the voxels in ``where``: the most probable label other than ``label`` (lowest index on ties)."""
    p = probs[:, where].copy()
    p[label] = -np.inf
    return np.argmax(p, axis=0)


def _apply_change(seg: np.ndarray, label: int, add: np.ndarray, remove: np.ndarray,
                  replacement: np.ndarray | int = 0) -> np.ndarray:
    out = seg.copy()
    out[remove] = replacement
    out[add] = label
    return out


def removes_too_much(before: np.ndarray, after: np.ndarray, label: int, max_removed_fraction: float) -> bool:
    """Whether going from ``before`` to ``after`` removes more than ``max_removed_fraction`` of the voxels
    that ``label`` has in ``before`` (the refiner's removal guard; 1.0 never triggers)."""
    if max_removed_fraction >= 1.0:
        return False
    was = before == label
    n_was = int(np.count_nonzero(was))
    return n_was > 0 and int(np.count_nonzero(was & (after != label))) > max_removed_fraction * n_was


# ---- probability-driven (ThresholdGrowStep, ForegroundPriorStep, BoundaryLevelStep) ----------------------

def threshold_class(seg: np.ndarray, probs: np.ndarray, *, label: int, threshold: float) -> np.ndarray:
    """Class probability threshold ``t`` for ``label``.

    ``t < 0.5`` adds background voxels with ``p_label >= t`` where ``label`` is the top foreground class;
    ``t > 0.5`` removes voxels of ``label`` with ``p_label < t`` (they go to the most probable other class);
    ``t == 0.5`` is the identity.
    """
    _check(seg, probs, label)
    if threshold == 0.5:
        return seg.copy()
    pc = probs[label]
    if threshold < 0.5:
        add = (seg == 0) & (pc >= threshold) & top_foreground(probs, label)
        return _apply_change(seg, label, add, np.zeros_like(add))
    remove = (seg == label) & (pc < threshold)
    return _apply_change(seg, label, np.zeros_like(remove), remove, best_other_label(probs, label, remove))


def grow_from_seeds(seg: np.ndarray, probs: np.ndarray, *, label: int, seed_threshold: float,
                    grow_threshold: float, connectivity: int = 1) -> np.ndarray:
    """Region growing (hysteresis): from seeds (voxels of ``label`` with ``p >= seed_threshold``), add the
    background voxels with ``p >= grow_threshold`` (``label`` being their top foreground class) that are
    connected to a seed through such voxels or voxels of ``label``. Nothing is removed."""
    _check(seg, probs, label)
    pc = probs[label]
    mask = seg == label
    seeds = mask & (pc >= seed_threshold)
    if not seeds.any():
        return seg.copy()
    candidate = ((seg == 0) & (pc >= grow_threshold) & top_foreground(probs, label)) | mask
    lab, _ = ndimage.label(candidate, ndimage.generate_binary_structure(3, connectivity))
    keep = np.unique(lab[seeds])
    grown = np.isin(lab, keep[keep > 0])
    add = grown & (seg == 0)
    return _apply_change(seg, label, add, np.zeros_like(add))


def shift_fg_prior(seg: np.ndarray, probs: np.ndarray, *, label: int, log_prior: float = 0.0,
                   volume_ratio: float | None = None) -> np.ndarray:
    """Foreground/background prior for ``label``: voxels flip only between ``label`` and background.

    With ``volume_ratio`` None: a voxel that is background or ``label`` becomes ``label`` iff
    ``log p_label + log_prior > log p_background`` (background voxels only where ``label`` is the top
    foreground class); ``log_prior == 0`` is the identity. With ``volume_ratio`` ρ: the class gets exactly
    ``round(ρ · Σ p_label)`` voxels (ρ times the expected volume under the probabilities), the ones with the
    highest ``log p_label − log p_background`` among those candidates (ties by voxel order).
    """
    _check(seg, probs, label)
    if volume_ratio is None and log_prior == 0.0:
        return seg.copy()
    mask = seg == label
    candidate = ((seg == 0) & top_foreground(probs, label)) | mask
    score = np.log(probs[label] + _EPS) - np.log(probs[0] + _EPS)
    if volume_ratio is None:
        new = candidate & (score + log_prior > 0)
    else:
        n_target = int(round(float(volume_ratio) * float(probs[label].sum(dtype=np.float64))))
        idx = np.flatnonzero(candidate)
        n_target = min(max(n_target, 0), idx.size)
        order = np.argsort(-score.ravel()[idx], kind="stable")
        new = np.zeros(seg.size, dtype=bool)
        new[idx[order[:n_target]]] = True
        new = new.reshape(seg.shape)
    add = new & ~mask
    remove = mask & ~new
    return _apply_change(seg, label, add, remove, 0)


def smooth_probabilities(probs: np.ndarray, sigma_mm: float, spacing) -> np.ndarray:
    """Gaussian smoothing of every channel, ``sigma_mm`` in millimetres on ``spacing`` (edges: nearest)."""
    if sigma_mm <= 0:
        return probs
    sigma = [float(sigma_mm) / float(s) for s in spacing]
    return np.stack([ndimage.gaussian_filter(probs[k].astype(np.float32, copy=False), sigma, mode="nearest",
                                             truncate=4.0) for k in range(probs.shape[0])])


def refine_boundary(seg: np.ndarray, probs: np.ndarray, *, label: int, sigma_mm: float = 0.0, level: float = 0.5,
                    band: int = 1, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Move the border of ``label`` along the probability gradient to the level set ``r = level`` of
    ``r = s_label / (s_label + s_other)``, where ``s`` are the probabilities smoothed with a Gaussian of
    ``sigma_mm`` and ``s_other`` the most probable other label; only voxels within ``band`` voxels
    (6-neighbourhood) of the current border change. ``sigma_mm == 0`` and ``level == 0.5`` is the identity.
    Voxels leaving ``label`` go to the most probable other label of the smoothed probabilities."""
    _check(seg, probs, label)
    if sigma_mm == 0.0 and level == 0.5:
        return seg.copy()
    mask = seg == label
    if not mask.any():
        return seg.copy()
    s = smooth_probabilities(probs, sigma_mm, spacing)
    cross = ndimage.generate_binary_structure(3, 1)
    outer = ndimage.binary_dilation(mask, cross, iterations=int(band))
    inner = ndimage.binary_erosion(mask, cross, iterations=int(band), border_value=0)
    in_band = outer & ~inner
    others = np.delete(s, label, axis=0).max(axis=0)
    ratio = s[label] / (s[label] + others + _EPS)
    wins = ratio >= level
    add = in_band & wins & ~mask
    remove = in_band & ~wins & mask
    return _apply_change(seg, label, add, remove, best_other_label(s, label, remove))


# ---- segmentation-only (MorphologyStep, ComponentFilterStep): usable as nnU-Net postprocessing -------------

def fill_holes(seg: np.ndarray, probs: np.ndarray | None = None, *, label: int) -> np.ndarray:
    """Fill the background holes of ``label`` (background not 6-connected to the outside of the mask)."""
    _check(seg, probs, label)
    mask = seg == label
    add = ndimage.binary_fill_holes(mask) & ~mask & (seg == 0)
    return _apply_change(seg, label, add, np.zeros_like(add))


def _pad(mask: np.ndarray, width: int) -> np.ndarray:
    return np.pad(mask, width, mode="constant", constant_values=False)


def open_close(seg: np.ndarray, probs: np.ndarray | None = None, *, label: int, open_radius: int = 0,
               close_radius: int = 0) -> np.ndarray:
    """Morphological closing (radius ``close_radius``), then opening (``open_radius``), of ``label`` with a
    digital ball; outside the image is background. Closing adds only background voxels; opening sends the
    voxels it removes to background. Radius 0 skips the step."""
    _check(seg, probs, label)
    mask = seg == label
    m = mask
    if close_radius > 0:
        w = int(close_radius) + 1
        b = ball(close_radius)
        p = ndimage.binary_erosion(ndimage.binary_dilation(_pad(m, w), b), b, border_value=0)
        m = p[w:-w, w:-w, w:-w]
    if open_radius > 0:
        w = int(open_radius) + 1
        b = ball(open_radius)
        p = ndimage.binary_dilation(ndimage.binary_erosion(_pad(m, w), b, border_value=0), b)
        m = p[w:-w, w:-w, w:-w]
    add = m & ~mask & (seg == 0)
    remove = mask & ~m
    return _apply_change(seg, label, add, remove, 0)


_NEIGHBOURS_26 = np.ones((3, 3, 3), dtype=np.int16)
_NEIGHBOURS_26[1, 1, 1] = 0


def enforce_compactness(seg: np.ndarray, probs: np.ndarray | None = None, *, label: int,
                        min_neighbors: int = 0) -> np.ndarray:
    """One pass of neighbour voting on the 26-neighbourhood: voxels of ``label`` with fewer than
    ``min_neighbors`` neighbours of ``label`` go to background (spurs, thin protrusions), background voxels
    with more than ``26 - min_neighbors`` neighbours of ``label`` join it (dents). 0 is the identity."""
    _check(seg, probs, label)
    if min_neighbors <= 0:
        return seg.copy()
    mask = seg == label
    count = ndimage.convolve(mask.astype(np.int16), _NEIGHBOURS_26, mode="constant", cval=0)
    remove = mask & (count < min_neighbors)
    add = (seg == 0) & (count > 26 - min_neighbors)
    return _apply_change(seg, label, add, remove, 0)


def filter_components(seg: np.ndarray, probs: np.ndarray | None = None, *, label: int, min_size_voxels: int = 0,
                      keep_largest: bool = False, connectivity: int = 1) -> np.ndarray:
    """Connected components of ``label`` (``connectivity`` 1: faces, 2: edges, 3: corners): remove those
    smaller than ``min_size_voxels``, or all but the largest with ``keep_largest`` (equal-sized largest ones
    are all kept). The largest component is never removed. Removed voxels go to background."""
    _check(seg, probs, label)
    mask = seg == label
    if not mask.any() or (min_size_voxels <= 0 and not keep_largest):
        return seg.copy()
    lab, n = ndimage.label(mask, ndimage.generate_binary_structure(3, connectivity))
    if n <= 1:
        return seg.copy()
    sizes = np.bincount(lab.ravel(), minlength=n + 1)
    sizes[0] = 0
    largest = sizes.max()
    keep = sizes >= (largest if keep_largest else min_size_voxels)
    keep |= sizes == largest
    keep[0] = False
    remove = mask & ~keep[lab]
    return _apply_change(seg, label, np.zeros_like(remove), remove, 0)
