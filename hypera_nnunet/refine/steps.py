"""The five refinement steps: parameterised postprocessing transforms of one class, tuned by ``refine fit``.

A step is not a learning agent: it is a fixed transform with a small, bounded parameter vector, and ``fit``
tunes that vector with the cross-entropy method (:mod:`.search`). Its parameters are a frozen dataclass whose
default is the identity (the step does nothing) and whose fields are checked against the step's bounds.
``act`` composes the pure transforms of :mod:`hypera_nnunet.refine.ops`; it never mutates its inputs. For the
search, :class:`Param` maps each field to the unit interval (``encode``/``decode``), so one search routine
serves every step.

==================  ========================  =========================================================  =====
step (file name)    class                     parameters (bounds)                                        probs
==================  ========================  =========================================================  =====
foreground_prior    ForegroundPriorStep       log_prior [-1.5, 1.5]; match_volume; volume_ratio           yes
                                              [0.8, 1.2]
threshold_grow      ThresholdGrowStep         threshold [0.25, 0.75]; grow; seed_threshold [0.5, 0.99];   yes
                                              grow_threshold [0.1, 0.5]
boundary_level      BoundaryLevelStep         sigma_mm [0, 2]; level [0.3, 0.7]; band [1, 3] voxels       yes
morphology          MorphologyStep            fill_holes; close_radius [0, 2]; open_radius [0, 2];        no
                                              compactness [0, 9]
components          ComponentFilterStep       min_size_voxels [0, 500]; keep_largest; connectivity        no
                                              {1, 2, 3}
==================  ========================  =========================================================  =====

Refiner files of format version 1 called the steps agents, by the names in :data:`LEGACY_NAMES`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import ops


@dataclass(frozen=True)
class Param:
    """One bounded parameter. ``kind`` is "float", "int" or "bool"; ``power`` > 1 gives small values more of
    the unit interval (``value = low + (high - low) * u ** power``)."""

    name: str
    kind: str
    low: float = 0.0
    high: float = 1.0
    power: float = 1.0

    def decode(self, u: float) -> Any:
        u = min(max(float(u), 0.0), 1.0)
        if self.kind == "bool":
            return u >= 0.5
        if self.kind == "int":
            return int(min(max(math.floor(self.low + (self.high - self.low + 1) * u ** self.power), self.low),
                           self.high))
        return float(self.low + (self.high - self.low) * u ** self.power)

    def encode(self, value: Any) -> float:
        if self.kind == "bool":
            return 0.75 if value else 0.25
        if self.kind == "int":
            frac = (float(value) - self.low + 0.5) / (self.high - self.low + 1)
        else:
            frac = (float(value) - self.low) / (self.high - self.low) if self.high > self.low else 0.0
        return min(max(frac, 0.0), 1.0) ** (1.0 / self.power)

    def check(self, step: str, value: Any) -> None:
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"{step}.{self.name} must be true or false, got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(f"{step}.{self.name} must be a number, got {value!r}")
        if self.kind == "int" and int(value) != value:
            raise ConfigError(f"{step}.{self.name} must be an integer, got {value!r}")
        if not (self.low <= float(value) <= self.high):
            raise ConfigError(f"{step}.{self.name} = {value} is outside its bounds [{self.low}, {self.high}]")


class _BoundedParams:
    """Mixin for the steps' frozen parameter dataclasses: bounds are checked on construction."""

    space: ClassVar[tuple[Param, ...]] = ()
    step_name: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for p in self.space:
            p.check(self.step_name, getattr(self, p.name))


@dataclass(frozen=True)
class ForegroundPriorParams(_BoundedParams):
    log_prior: float = 0.0
    match_volume: bool = False
    volume_ratio: float = 1.0
    space: ClassVar = (Param("log_prior", "float", -1.5, 1.5), Param("match_volume", "bool"),
                       Param("volume_ratio", "float", 0.8, 1.2))
    step_name: ClassVar = "foreground_prior"


@dataclass(frozen=True)
class ThresholdGrowParams(_BoundedParams):
    threshold: float = 0.5
    grow: bool = False
    seed_threshold: float = 0.9
    grow_threshold: float = 0.3
    space: ClassVar = (Param("threshold", "float", 0.25, 0.75), Param("grow", "bool"),
                       Param("seed_threshold", "float", 0.5, 0.99), Param("grow_threshold", "float", 0.1, 0.5))
    step_name: ClassVar = "threshold_grow"


@dataclass(frozen=True)
class BoundaryLevelParams(_BoundedParams):
    sigma_mm: float = 0.0
    level: float = 0.5
    band: int = 1
    space: ClassVar = (Param("sigma_mm", "float", 0.0, 2.0), Param("level", "float", 0.3, 0.7),
                       Param("band", "int", 1, 3))
    step_name: ClassVar = "boundary_level"


@dataclass(frozen=True)
class MorphologyParams(_BoundedParams):
    fill_holes: bool = False
    close_radius: int = 0
    open_radius: int = 0
    compactness: int = 0
    space: ClassVar = (Param("fill_holes", "bool"), Param("close_radius", "int", 0, 2),
                       Param("open_radius", "int", 0, 2), Param("compactness", "int", 0, 9))
    step_name: ClassVar = "morphology"


@dataclass(frozen=True)
class ComponentParams(_BoundedParams):
    min_size_voxels: int = 0
    keep_largest: bool = False
    connectivity: int = 1
    space: ClassVar = (Param("min_size_voxels", "int", 0, 500, power=2.0), Param("keep_largest", "bool"),
                       Param("connectivity", "int", 1, 3))
    step_name: ClassVar = "components"


class RefinementStep:
    """Base class: a name, a parameter dataclass, and a pure ``act``."""

    name: ClassVar[str] = ""
    Params: ClassVar[type] = _BoundedParams
    uses_probabilities: ClassVar[bool] = True

    @property
    def space(self) -> tuple[Param, ...]:
        return self.Params.space

    def neutral(self):
        """The identity parameters."""
        return self.Params()

    def is_identity(self, params) -> bool:
        return params == self.neutral()

    def decode(self, u: np.ndarray):
        return self.Params(**{p.name: p.decode(x) for p, x in zip(self.space, u)})

    def encode(self, params) -> np.ndarray:
        return np.array([p.encode(getattr(params, p.name)) for p in self.space], dtype=float)

    def params_from_dict(self, d: dict[str, Any]):
        unknown = set(d) - {p.name for p in self.space}
        if unknown:
            raise ConfigError(f"step '{self.name}' has no parameter(s) {sorted(unknown)}")
        kw = {}
        for p in self.space:
            if p.name in d:
                v = d[p.name]
                kw[p.name] = int(v) if p.kind == "int" and isinstance(v, (int, float)) and int(v) == v else v
        return self.Params(**kw)

    def reach_voxels(self, spacing) -> np.ndarray:
        """How far (voxels per axis) this step can act beyond the region it starts from, over its bounds."""
        return np.zeros(len(spacing), dtype=int)

    def act(self, seg: np.ndarray, probs: np.ndarray | None, *, label: int, params, spacing) -> np.ndarray:
        raise NotImplementedError


class ForegroundPriorStep(RefinementStep):
    """Foreground/background prior for one class, against over- and under-segmentation: a log-odds shift
    against background, or matching the class volume to ``volume_ratio`` × its expected volume Σp."""

    name = "foreground_prior"
    Params = ForegroundPriorParams

    def act(self, seg, probs, *, label, params: ForegroundPriorParams, spacing=(1.0, 1.0, 1.0)):
        if params.match_volume:
            return ops.shift_fg_prior(seg, probs, label=label, volume_ratio=params.volume_ratio)
        return ops.shift_fg_prior(seg, probs, label=label, log_prior=params.log_prior)


class ThresholdGrowStep(RefinementStep):
    """Class probability threshold, then (optionally) region growing from confident seeds."""

    name = "threshold_grow"
    Params = ThresholdGrowParams

    def act(self, seg, probs, *, label, params: ThresholdGrowParams, spacing=(1.0, 1.0, 1.0)):
        out = ops.threshold_class(seg, probs, label=label, threshold=params.threshold)
        if params.grow:
            out = ops.grow_from_seeds(out, probs, label=label, seed_threshold=params.seed_threshold,
                                      grow_threshold=params.grow_threshold)
        return out


class BoundaryLevelStep(RefinementStep):
    """Boundary refinement along the probability gradient, on Gaussian-smoothed probabilities."""

    name = "boundary_level"
    Params = BoundaryLevelParams

    def reach_voxels(self, spacing) -> np.ndarray:
        sigma_max = BoundaryLevelParams.space[0].high
        band_max = int(BoundaryLevelParams.space[2].high)
        return np.array([band_max + int(4.0 * sigma_max / float(s) + 0.5) for s in spacing], dtype=int)

    def act(self, seg, probs, *, label, params: BoundaryLevelParams, spacing=(1.0, 1.0, 1.0)):
        return ops.refine_boundary(seg, probs, label=label, sigma_mm=params.sigma_mm, level=params.level,
                                   band=params.band, spacing=spacing)


class MorphologyStep(RefinementStep):
    """Closing, hole filling, opening and neighbour-vote compactness (in that order); segmentation only."""

    name = "morphology"
    Params = MorphologyParams
    uses_probabilities = False

    def reach_voxels(self, spacing) -> np.ndarray:
        return np.full(len(spacing), int(MorphologyParams.space[1].high) + 1, dtype=int)

    def act(self, seg, probs=None, *, label, params: MorphologyParams, spacing=(1.0, 1.0, 1.0)):
        out = seg
        if params.close_radius:
            out = ops.open_close(out, label=label, close_radius=params.close_radius)
        if params.fill_holes:
            out = ops.fill_holes(out, label=label)
        if params.open_radius:
            out = ops.open_close(out, label=label, open_radius=params.open_radius)
        if params.compactness:
            out = ops.enforce_compactness(out, label=label, min_neighbors=params.compactness)
        return out.copy() if out is seg else out


class ComponentFilterStep(RefinementStep):
    """Connected components: minimum size and keep-largest per class; segmentation only."""

    name = "components"
    Params = ComponentParams
    uses_probabilities = False

    def act(self, seg, probs=None, *, label, params: ComponentParams, spacing=(1.0, 1.0, 1.0)):
        return ops.filter_components(seg, label=label, min_size_voxels=params.min_size_voxels,
                                     keep_largest=params.keep_largest, connectivity=params.connectivity)


STEP_CLASSES: dict[str, type[RefinementStep]] = {
    cls.name: cls for cls in (ForegroundPriorStep, ThresholdGrowStep, BoundaryLevelStep, MorphologyStep,
                              ComponentFilterStep)
}
STEP_ORDER: tuple[str, ...] = tuple(STEP_CLASSES)
LEGACY_NAMES: dict[str, str] = {"fg_balance": "foreground_prior", "region": "threshold_grow",
                                "boundary": "boundary_level", "shape": "morphology", "object": "components"}
"""What refiner files of format version 1 (and ``--agents``) called each step."""


def canonical_name(name: str) -> str:
    """The step's name, for a current or a legacy (format version 1) name; unknown names are returned as given."""
    return LEGACY_NAMES.get(name, name)


def make_steps(names=STEP_ORDER) -> tuple[RefinementStep, ...]:
    """Steps by name (legacy names accepted), always in :data:`STEP_ORDER`.

    :param names: step names; an unknown one raises :class:`ConfigError` naming it.
    """
    names = [canonical_name(n) for n in names]
    unknown = [n for n in names if n not in STEP_CLASSES]
    if unknown:
        raise ConfigError(f"unknown step(s) {unknown}; known: {list(STEP_ORDER)}")
    if not names:
        raise ConfigError("at least one refinement step is needed")
    return tuple(STEP_CLASSES[n]() for n in STEP_ORDER if n in names)


def params_dict(params) -> dict[str, Any]:
    """JSON-ready parameters (plain bool/int/float)."""
    out = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        out[f.name] = bool(v) if isinstance(v, (bool, np.bool_)) else (int(v) if isinstance(v, (int, np.integer))
                                                                      else float(v))
    return out
