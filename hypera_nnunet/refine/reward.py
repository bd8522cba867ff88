"""The multi-objective reward that guides ``fit``, and the adaptive weight manager that adjusts it.

For one class of one case (prediction mask P, reference mask R, voxel spacing in mm), six terms, each in
[0, 1], 1 being best:

=============  ====================================================================================
dice           Dice(P, R); 1 when both are empty
nsd            normalised surface Dice at ``nsd_tolerance_mm`` (definition in :mod:`.metrics`); 1 if both empty
hd95           1 − min(HD95 / ``hd95_scale_mm``, 1); 0 when exactly one mask is empty, 1 if both are
pr_balance     1 − |precision − recall|; 0 when P or R is empty (but not both)
compactness    1 − min(|ψ(P) − ψ(R)|, 1), ψ = voxel-face sphericity π^(1/3) (6V)^(2/3) / A, A the area of
               the voxel faces between the mask and the rest (mm²), V the volume (mm³)
fg_balance     1 − min(|V(P) − V(R)| / V(R), 1): over- and under-segmentation alike
=============  ====================================================================================

The reward is the weighted mean of the terms. It only guides the search: whether a refinement is kept is
decided by nnU-Net's Dice rule (:mod:`.refiner`), never by this reward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import metrics

TERMS = ("dice", "nsd", "hd95", "pr_balance", "compactness", "fg_balance")


@dataclass(frozen=True)
class RewardWeights:
    """Base weights of the six terms (normalised by their sum) and the two scales of the distance terms."""

    dice: float = 0.4
    nsd: float = 0.2
    hd95: float = 0.1
    pr_balance: float = 0.1
    compactness: float = 0.1
    fg_balance: float = 0.1
    hd95_scale_mm: float = 10.0
    nsd_tolerance_mm: float = metrics.DEFAULT_NSD_TOLERANCE_MM

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"reward weight {f.name} must be a finite number >= 0, got {v!r}")
        if self.hd95_scale_mm <= 0 or self.nsd_tolerance_mm <= 0:
            raise ConfigError("hd95_scale_mm and nsd_tolerance_mm must be > 0")
        if sum(self.term_weights().values()) <= 0:
            raise ConfigError("at least one reward weight must be > 0")

    def term_weights(self) -> dict[str, float]:
        return {t: float(getattr(self, t)) for t in TERMS}


def face_area_and_volume(mask: np.ndarray, spacing) -> tuple[float, float]:
    """(area of the voxel faces between mask and non-mask, mm²; volume, mm³). Outside the image is non-mask."""
    sp = [float(s) for s in spacing]
    vol = float(np.count_nonzero(mask)) * sp[0] * sp[1] * sp[2]
    area = 0.0
    for ax in range(3):
        face = sp[(ax + 1) % 3] * sp[(ax + 2) % 3]
        m = np.asarray(mask, dtype=np.int8)
        inner = int(np.count_nonzero(np.diff(m, axis=ax)))
        ends = int(np.count_nonzero(np.take(m, 0, axis=ax))) + int(np.count_nonzero(np.take(m, -1, axis=ax)))
        area += (inner + ends) * face
    return area, vol


def sphericity(mask: np.ndarray, spacing) -> float:
    """Voxel-face sphericity π^(1/3) (6V)^(2/3) / A (1 for a ball; lower for digital shapes); 0 if empty."""
    area, vol = face_area_and_volume(mask, spacing)
    return 0.0 if area == 0 else float(math.pi ** (1 / 3) * (6 * vol) ** (2 / 3) / area)


@dataclass(frozen=True)
class Reference:
    """What the reward needs from a reference mask, computed once per case and class."""

    mask: np.ndarray
    surface: np.ndarray
    distance_map: np.ndarray | None  # mm to the nearest reference surface voxel; None when R is empty
    volume: float
    sphericity: float

    @classmethod
    def from_mask(cls, mask: np.ndarray, spacing) -> Reference:
        surf = metrics.surface(mask)
        dmap = metrics.distances_to_surface(surf, spacing).astype(np.float32) if surf.any() else None
        _, vol = face_area_and_volume(mask, spacing)
        return cls(mask, surf, dmap, vol, sphericity(mask, spacing))


def reward_terms(pred: np.ndarray, ref: Reference, spacing, weights: RewardWeights) -> dict[str, float]:
    """The six terms for one class of one case (see the module docstring)."""
    p_n = int(np.count_nonzero(pred))
    r_n = int(np.count_nonzero(ref.mask))
    if p_n == 0 and r_n == 0:
        return dict.fromkeys(TERMS, 1.0)
    if p_n == 0 or r_n == 0:
        return {"dice": 0.0, "nsd": 0.0, "hd95": 0.0, "pr_balance": 0.0,
                "compactness": 1.0 - min(abs(sphericity(pred, spacing) - ref.sphericity), 1.0), "fg_balance": 0.0}
    tp = int(np.count_nonzero(pred & ref.mask))
    sp = metrics.surface(pred)
    d_pr = ref.distance_map[sp].astype(np.float64)
    d_rp = metrics.directed_distances(ref.surface, sp, spacing)
    s = metrics.surface_scores_from_distances(d_pr, d_rp, weights.nsd_tolerance_mm)
    precision, recall = tp / p_n, tp / r_n
    _, vol = face_area_and_volume(pred, spacing)
    return {
        "dice": 2.0 * tp / (p_n + r_n),
        "nsd": s.nsd,
        "hd95": 1.0 - min(s.hd95 / weights.hd95_scale_mm, 1.0),
        "pr_balance": 1.0 - abs(precision - recall),
        "compactness": 1.0 - min(abs(sphericity(pred, spacing) - ref.sphericity), 1.0),
        "fg_balance": 1.0 - min(abs(vol - ref.volume) / ref.volume, 1.0),
    }


def combine(terms: dict[str, float], term_weights: dict[str, float]) -> float:
    total = sum(term_weights.values())
    return float(sum(term_weights[t] * terms[t] for t in TERMS) / total)


class AdaptiveWeightManager:
    """Adjusts the term weights between searches: a term with more room to improve (1 − its mean over the
    fit cases) gets more weight, relative to the others.

    ``w_t = base_t · clip(gap_t / mean_gap, min_factor, max_factor)``, smoothed with ``rate``
    (``w ← (1 − rate) w + rate w_target``). The Dice weight never drops below its base value, since Dice is
    what the acceptance rule checks. Deterministic: no randomness, no state beyond the weights.
    """

    def __init__(self, base: RewardWeights = RewardWeights(), *, rate: float = 0.5, min_factor: float = 0.5,
                 max_factor: float = 2.0) -> None:
        if not (0.0 <= rate <= 1.0) or not (0 < min_factor <= 1.0 <= max_factor):
            raise ConfigError("need 0 <= rate <= 1 and 0 < min_factor <= 1 <= max_factor")
        self.base = base
        self.rate = rate
        self.min_factor = min_factor
        self.max_factor = max_factor
        self._weights = base.term_weights()
        self.history: list[dict[str, float]] = [dict(self._weights)]

    @property
    def weights(self) -> dict[str, float]:
        return dict(self._weights)

    def update(self, term_means: dict[str, float]) -> dict[str, float]:
        base = self.base.term_weights()
        gaps = {t: max(0.0, 1.0 - float(term_means[t])) for t in TERMS if not math.isnan(term_means[t])}
        mean_gap = sum(gaps.values()) / len(gaps) if gaps else 0.0
        if mean_gap <= 0:
            return self.weights
        for t in TERMS:
            if t not in gaps:
                continue
            factor = min(max(gaps[t] / mean_gap, self.min_factor), self.max_factor)
            target = base[t] * factor
            self._weights[t] = (1 - self.rate) * self._weights[t] + self.rate * target
        self._weights["dice"] = max(self._weights["dice"], base["dice"])
        self.history.append(dict(self._weights))
        return self.weights
