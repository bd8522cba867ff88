"""``Refiner``: the per-class chains of tuned refinement steps; ``fit`` tunes and accepts them, ``refine`` applies them.

**Combination.** For each foreground class, in label order, the refiner applies that class's accepted chain
of tuned steps (:mod:`.steps`) in the fixed step order foreground_prior → threshold_grow → boundary_level →
morphology → components, each to the output of the previous one, with nnU-Net's probabilities as evidence.
A class without an accepted chain is left as it is (identity).

**Fit** (training mode, rewards from the labels), class by class in label order, starting from nnU-Net's
cross-validation predictions with the chains already accepted for earlier classes:

1. Search. For each step in order, a cross-entropy-method search (:mod:`.search`) over its bounded
   parameters maximises the mean multi-objective reward (:mod:`.reward`) of that class over the search
   cases (at most ``max_search_cases``, drawn with the refiner's Generator), subject to a hard
   constraint: no class's mean Dice may fall. The step's best parameters join the class's chain only if
   they beat the identity. The adaptive weight manager re-weights the reward terms after each step.
2. Accept, as nnU-Net accepts its own postprocessing: on all fit cases, the chain is kept only if the
   class's mean Dice (nanmean over cases, nnU-Net's definition) goes up by more than ``min_gain`` and no
   other class's mean Dice goes down. If the whole chain fails, its shorter prefixes are tried, longest
   first; if none passes, the class keeps the identity.

**Removal guard.** In every case, a step that would remove more than ``max_removed_fraction`` (default
one half) of the voxels a class has is skipped for that case, in fit and apply alike. It needs no labels.
It keeps a refinement learned on other folds from deleting a class that a different model predicts
thinner or more fragmented, for example by opening.

**Apply** (inference mode, no labels) is deterministic: no randomness is used.

**Bounding box.** Refinement runs in the box around the predicted foreground and every voxel where nnU-Net
gives the foreground at least 1 % (background probability below 0.99), plus a margin that covers how far
the steps can act. All steps give the same result as on the full volume except the expected-volume
match of ``ForegroundPriorStep``, whose Σp counts the box only.

**File format** (JSON, :meth:`Refiner.to_dict`): version 2 names the steps (``steps``, ``chains``); version 1
files, written before the rename, called them agents (``agents``, ``policies``, ``actions``, ``agent``, with the
names of :data:`~hypera_nnunet.refine.steps.LEGACY_NAMES`) and are still read.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hypera_nnunet.errors import ConfigError, HyperaError
from hypera_nnunet.refine import metrics
from hypera_nnunet.refine.ops import removes_too_much
from hypera_nnunet.refine.reward import AdaptiveWeightManager, Reference, RewardWeights, combine, reward_terms
from hypera_nnunet.refine.search import SearchSettings, cem_search
from hypera_nnunet.refine.steps import STEP_ORDER, RefinementStep, canonical_name, make_steps, params_dict

BACKGROUND_CONFIDENT = 0.99
FORMAT = "hypera-nnunet-refiner"
FORMAT_VERSION = 2
PER_CASE_VERSION = 3  # a refiner with per-case policies: older readers must not apply its chains alone
START_VERSION = 4  # a refiner that starts from nnU-Net's postprocessing (:mod:`.start`): older readers would skip it
READABLE_VERSIONS = (1, 2, 3, 4)


@dataclass(frozen=True)
class TunedStep:
    """One step with the parameters tuned for one class."""

    step: str
    params: object

    def to_dict(self) -> dict:
        return {"step": self.step, "params": params_dict(self.params)}


@dataclass(frozen=True)
class ClassChain:
    """The accepted chain of tuned steps for one label (empty: identity)."""

    label: int
    steps: tuple[TunedStep, ...] = ()


def work_box(seg: np.ndarray, probs: np.ndarray | None, margin: Sequence[int]) -> tuple[slice, ...] | None:
    """Box around the predicted foreground and the voxels with background probability < 0.99, plus
    ``margin`` voxels per axis; None when there is neither."""
    region = seg > 0
    if probs is not None:
        region = region | (probs[0] < BACKGROUND_CONFIDENT)
    if not region.any():
        return None
    box = []
    for ax, size in enumerate(seg.shape):
        other = tuple(a for a in range(seg.ndim) if a != ax)
        idx = np.flatnonzero(region.any(axis=other))
        box.append(slice(max(int(idx[0]) - int(margin[ax]), 0), min(int(idx[-1]) + int(margin[ax]) + 1, size)))
    return tuple(box)


def _union_box(a: tuple[slice, ...] | None, mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    starts, stops = [], []
    for ax, size in enumerate(mask.shape):
        other = tuple(x for x in range(mask.ndim) if x != ax)
        idx = np.flatnonzero(mask.any(axis=other))
        lo = [int(idx[0]) - margin] if idx.size else []
        hi = [int(idx[-1]) + margin + 1] if idx.size else []
        if a is not None:
            lo.append(a[ax].start)
            hi.append(a[ax].stop)
        starts.append(max(min(lo), 0) if lo else 0)
        stops.append(min(max(hi), size) if hi else 1)
    return tuple(slice(s, e) for s, e in zip(starts, stops))


@dataclass
class FitCase:
    """One cross-validation case, cropped: ``seg``/``ref`` in the metric box (which holds all foreground of
    both), ``probs`` in the work box, ``work`` the work box inside the metric box (None: nothing to refine)."""

    name: str
    seg: np.ndarray
    ref: np.ndarray
    probs: np.ndarray | None
    work: tuple[slice, ...] | None
    spacing: tuple[float, ...]
    fold: int | None = None
    _refs: dict[int, Reference] = field(default_factory=dict, repr=False)

    @classmethod
    def from_arrays(cls, name: str, seg: np.ndarray, ref: np.ndarray, probs: np.ndarray | None, spacing,
                    margin: Sequence[int], fold: int | None = None) -> FitCase:
        box = work_box(seg, probs, margin)
        outer = _union_box(box, ref > 0)
        if box is None:
            work, p = None, None
        else:
            work = tuple(slice(b.start - o.start, b.stop - o.start) for b, o in zip(box, outer))
            p = None if probs is None else np.ascontiguousarray(probs[(slice(None), *box)], dtype=np.float32)
        return cls(name, np.ascontiguousarray(seg[outer]), np.ascontiguousarray(ref[outer]), p, work,
                   tuple(float(s) for s in spacing), fold)

    def reference(self, label: int) -> Reference:
        if label not in self._refs:
            self._refs[label] = Reference.from_mask(self.ref == label, self.spacing)
        return self._refs[label]


def accept(before: dict[int, float], after: dict[int, float], label: int, min_gain: float = 0.0) -> bool:
    """nnU-Net's acceptance rule, per class: ``label``'s mean Dice must rise by more than ``min_gain`` and no
    other class's mean Dice may fall (a class whose Dice is undefined before and after is ignored)."""
    b, a = before[label], after[label]
    if math.isnan(b) or math.isnan(a) or not a > b + min_gain:
        return False
    for other in before:
        if other == label:
            continue
        bo, ao = before[other], after[other]
        if math.isnan(bo) and math.isnan(ao):
            continue
        if math.isnan(bo) != math.isnan(ao) or ao < bo:
            return False
    return True


def _dice_all(seg: np.ndarray, ref: np.ndarray, labels: Sequence[int]) -> dict[int, float]:
    return {lab: metrics.dice(seg == lab, ref == lab) for lab in labels}


def _mean_dice(per_case: list[dict[int, float]], labels: Sequence[int]) -> dict[int, float]:
    return {lab: metrics.nanmean(d[lab] for d in per_case) for lab in labels}


class Refiner:
    """The refinement steps and the per-class chains; ``fit`` tunes and accepts them, ``refine`` applies them.

    :param steps: names of the steps that ``fit`` may use (:data:`~hypera_nnunet.refine.steps.STEP_ORDER`).
    :param labels: label value -> name, background included (from ``dataset.json``).
    :param seed: seed of the refiner's own Generator (search-case draws and CEM samples).
    :param weights: base weights of the reward terms.
    :param search: the CEM budget per step and class.
    :param min_gain: mean Dice a class must gain for its chain to be accepted.
    :param max_removed_fraction: the removal guard (1 disables it).
    """

    def __init__(self, steps: Sequence[str] = STEP_ORDER, *, labels: dict[int, str] | None = None,
                 seed: int = 0, weights: RewardWeights | None = None, search: SearchSettings | None = None,
                 min_gain: float = 0.0, max_removed_fraction: float = 0.5) -> None:
        self.steps: dict[str, RefinementStep] = {a.name: a for a in make_steps(steps)}
        self.labels = dict(labels or {})
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.weights = weights if weights is not None else RewardWeights()
        self.search = search if search is not None else SearchSettings()
        if not (min_gain >= 0 and math.isfinite(min_gain)):
            raise ConfigError(f"min_gain must be a finite number >= 0, got {min_gain}")
        self.min_gain = float(min_gain)
        if not (0.0 < max_removed_fraction <= 1.0):
            raise ConfigError(f"max_removed_fraction must be in (0, 1], got {max_removed_fraction}")
        self.max_removed_fraction = float(max_removed_fraction)
        self.chains: dict[int, ClassChain] = {}
        self.per_case: dict = {}  # label -> per_case.ClassPolicy (refine fit --policy per-case)
        self.start: tuple = ()  # start.StartStep chain applied before everything (refine fit --postprocessing)

    # ---- combination ---------------------------------------------------------------------------------
    def margin(self, spacing) -> np.ndarray:
        """Voxels per axis around the box that the steps (all of their bounds) may reach, plus one."""
        reach = sum((a.reach_voxels(spacing) for a in self.steps.values()), np.zeros(len(spacing), dtype=int))
        return reach + 1

    @property
    def labels_fg(self) -> list[int]:
        """The foreground labels (every label but 0 that the refiner knows)."""
        return sorted({k for k in self.labels if k != 0} | set(self.chains))

    @property
    def uses_probabilities(self) -> bool:
        return bool(self.per_case) or any(self.steps[a.step].uses_probabilities for p in self.chains.values()
                                          for a in p.steps)

    def act(self, seg: np.ndarray, probs: np.ndarray | None, label: int, action: TunedStep,
            spacing) -> tuple[np.ndarray, bool]:
        """One tuned step on one case, under the removal guard: if it would remove more than
        ``max_removed_fraction`` of the voxels the class has in this case, it is skipped for this case
        (returns ``seg`` itself and True). Label-free, so fit and apply behave the same."""
        step = self.steps[action.step]
        new = step.act(seg, probs if step.uses_probabilities else None, label=label, params=action.params,
                        spacing=spacing)
        if removes_too_much(seg, new, label, self.max_removed_fraction):
            return seg, True
        return new, False

    def refine(self, seg: np.ndarray, probs: np.ndarray | None, spacing) -> tuple[np.ndarray, dict[int, list]]:
        """Apply the chains to one case. Returns the new label map (a new array) and, per label, the steps
        taken with the voxels each added to and removed from the class."""
        if probs is None and self.uses_probabilities:
            raise HyperaError("this refinement uses nnU-Net's probabilities, but none were given")
        log: dict[int, list] = {lab: [] for lab in sorted(self.chains)}
        if self.start:
            from hypera_nnunet.refine.start import apply_start

            seg = apply_start(seg, self.start)
        box = work_box(seg, probs, self.margin(spacing))
        if box is None or not (any(p.steps for p in self.chains.values()) or self.per_case):
            return seg.copy(), log
        s = seg[box]
        p = None if probs is None else probs[(slice(None), *box)]
        if self.per_case:
            from hypera_nnunet.refine.per_case import apply_per_case

            s, chosen = apply_per_case(self, s, p, sorted(self.labels_fg), spacing,
                                       lambda x, lab, action: self.act(x, p, lab, action, spacing)[0])
            out = seg.copy()
            out[box] = s
            return out, {lab: [{"per_case_candidate": k}] for lab, k in chosen.items()}
        for lab in sorted(self.chains):
            for action in self.chains[lab].steps:
                new, skipped = self.act(s, p, lab, action, spacing)
                was, now = s == lab, new == lab
                log[lab].append({**action.to_dict(), "added": int(np.count_nonzero(now & ~was)),
                                 "removed": int(np.count_nonzero(was & ~now)), "skipped_by_guard": skipped})
                s = new
        out = seg.copy()
        out[box] = s
        return out, log

    def _apply_chain(self, state: np.ndarray, case: FitCase, label: int, actions: Sequence[TunedStep]) -> np.ndarray:
        if case.work is None or not actions:
            return state
        s = state[case.work]
        for action in actions:
            s, _ = self.act(s, case.probs, label, action, case.spacing)
        out = state.copy()
        out[case.work] = s
        return out

    # ---- fit -----------------------------------------------------------------------------------------
    def fit(self, cases: Sequence[FitCase], labels: Sequence[int],
            log: Callable[[str], None] = lambda msg: None) -> dict:
        """Tune and accept one chain per label from labelled cross-validation cases; returns the fit report."""
        if not cases:
            raise HyperaError("no cases to fit the refinement on")
        labels = [int(lab) for lab in labels]
        manager = AdaptiveWeightManager(self.weights)
        working = [c.seg for c in cases]
        raw_dice = [_dice_all(c.seg, c.ref, labels) for c in cases]
        report: dict = {"classes": {}, "reward_weights": []}
        self.chains = {}
        for label in labels:
            t0 = time.perf_counter()
            n_search = min(len(cases), self.search.max_search_cases)
            idx = np.sort(self.rng.choice(len(cases), size=n_search, replace=False))
            current = [working[i] for i in idx]
            chain: list[TunedStep] = []
            search_log = []
            for step in self.steps.values():
                if step.uses_probabilities and any(cases[i].probs is None and cases[i].work is not None
                                                    for i in idx):
                    continue
                term_w = manager.weights
                dice_now = _mean_dice([_dice_all(current[j], cases[i].ref, labels) for j, i in enumerate(idx)],
                                      labels)
                objective = functools.partial(self._objective, step=step, label=label, labels=labels,
                                              cases=[cases[i] for i in idx], states=current, dice_now=dice_now,
                                              term_weights=term_w)
                res = cem_search(objective, step, self.rng, self.search)
                chosen = not step.is_identity(res.best) and res.best_value > res.neutral_value
                search_log.append({"step": step.name, "identity_reward": res.neutral_value,
                                   "best_reward": res.best_value, "best_params": params_dict(res.best),
                                   "evaluations": res.evaluations, "chosen": chosen, "term_weights": term_w})
                if chosen:
                    action = TunedStep(step.name, res.best)
                    chain.append(action)
                    current = [self._apply_chain(current[j], cases[i], label, [action]) for j, i in enumerate(idx)]
                terms = [reward_terms(current[j] == label, cases[i].reference(label), cases[i].spacing, self.weights)
                         for j, i in enumerate(idx)]
                manager.update({t: metrics.nanmean(x[t] for x in terms) for t in terms[0]})
            # acceptance on all fit cases, nnU-Net's rule
            before = _mean_dice([_dice_all(working[i], c.ref, labels) for i, c in enumerate(cases)], labels)
            trials, accepted = [], ()
            for k in range(len(chain), 0, -1):
                sub = tuple(chain[:k])
                outs = [self._apply_chain(working[i], c, label, sub) for i, c in enumerate(cases)]
                after = _mean_dice([_dice_all(o, c.ref, labels) for o, c in zip(outs, cases)], labels)
                ok = accept(before, after, label, self.min_gain)
                trials.append({"steps": [a.to_dict() for a in sub], "dice_before": before, "dice_after": after,
                               "accepted": ok})
                if ok:
                    accepted, working = sub, outs
                    break
            self.chains[label] = ClassChain(label, accepted)
            name = self.labels.get(label, str(label))
            log(f"class {label} ({name}): " + (f"accepted {[a.step for a in accepted]}, Dice "
                                               f"{before[label]:.4f} -> {trials[-1]['dice_after'][label]:.4f}"
                                               if accepted else "identity (no refinement improved Dice "
                                               "without another class getting worse)")
                + f" [{time.perf_counter() - t0:.1f} s]")
            report["classes"][str(label)] = {
                "name": name, "accepted": bool(accepted), "steps": [a.to_dict() for a in accepted],
                "search_cases": [cases[i].name for i in idx], "search": search_log,
                "acceptance_trials": [_jsonable_trial(t) for t in trials]}
            report["reward_weights"] = manager.history
        report["metrics_before"] = summarize(cases, [c.seg for c in cases], labels, self.weights.nsd_tolerance_mm)
        report["metrics_after"] = summarize(cases, working, labels, self.weights.nsd_tolerance_mm)
        report["raw_dice_per_case"] = {c.name: {str(k): v for k, v in d.items()} for c, d in zip(cases, raw_dice)}
        return report

    def _objective(self, params, *, step: RefinementStep, label: int, labels: Sequence[int],
                   cases: Sequence[FitCase], states: Sequence[np.ndarray], dice_now: dict[int, float],
                   term_weights: dict[str, float]) -> float:
        """Mean reward of one candidate over the search cases, under a hard Dice constraint: a candidate that
        lowers the mean Dice of any class (against the chain so far) scores ``-1 - loss``, below every
        candidate that does not (rewards are in [0, 1]), so the search still ranks infeasible ones."""
        action = [TunedStep(step.name, params)]
        rewards, dice_after = [], []
        for case, state in zip(cases, states):
            out = self._apply_chain(state, case, label, action)
            rewards.append(combine(reward_terms(out == label, case.reference(label), case.spacing, self.weights),
                                   term_weights))
            dice_after.append(_dice_all(out, case.ref, labels))
        after = _mean_dice(dice_after, labels)
        loss = sum(max(0.0, dice_now[k] - after[k]) for k in labels
                   if not (math.isnan(dice_now[k]) or math.isnan(after[k])))
        return float(np.mean(rewards)) if loss == 0 else -1.0 - loss

    # ---- persistence ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The refiner as JSON-ready data (format version :data:`FORMAT_VERSION`)."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "steps": list(self.steps), "labels": {str(k): v for k, v in self.labels.items()},
            "seed": self.seed, "min_gain": self.min_gain, "max_removed_fraction": self.max_removed_fraction,
            "reward_weights": {k: getattr(self.weights, k) for k in self.weights.__dataclass_fields__},
            "search": {k: getattr(self.search, k) for k in self.search.__dataclass_fields__},
            "chains": {str(lab): {"name": self.labels.get(lab, str(lab)),
                                  "steps": [a.to_dict() for a in chain.steps]}
                       for lab, chain in sorted(self.chains.items())},
        } | ({"version": PER_CASE_VERSION,
              "per_case": {str(lab): {"candidates": [[a.to_dict() for a in c] for c in pol.candidates],
                                      "policy": pol.bandit.to_dict()}
                           for lab, pol in sorted(self.per_case.items())}} if self.per_case else {}) | (
            {"version": START_VERSION, "start": [st.to_dict() for st in self.start]} if self.start else {})

    @classmethod
    def from_dict(cls, d: dict, source: str = "refiner") -> Refiner:
        """A refiner from :meth:`to_dict`'s data (format version 1 to 4).

        :param d: the decoded JSON.
        :param source: what to name in errors (the file).
        """
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise HyperaError(f"{source} is not a hypera-nnunet refiner (written by `hypera-nnunet refine fit`)")
        if d.get("version") not in READABLE_VERSIONS:
            raise HyperaError(f"{source} has refiner format version {d.get('version')}, this version reads "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
        try:
            d = _upgrade_v1(d) if d["version"] == 1 else d
            refiner = cls(d["steps"], labels={int(k): v for k, v in d["labels"].items()}, seed=d.get("seed", 0),
                          weights=RewardWeights(**d.get("reward_weights", {})),
                          search=SearchSettings(**d.get("search", {})), min_gain=d.get("min_gain", 0.0),
                          max_removed_fraction=d.get("max_removed_fraction", 0.5))
            for key, chain in d["chains"].items():
                label = int(key)
                tuned = []
                for a in chain["steps"]:
                    if a["step"] not in refiner.steps:
                        raise ConfigError(f"class {label} uses step '{a['step']}', not among {list(refiner.steps)}")
                    tuned.append(TunedStep(a["step"], refiner.steps[a["step"]].params_from_dict(a["params"])))
                refiner.chains[label] = ClassChain(label, tuple(tuned))
            if d.get("start"):
                from hypera_nnunet.refine.start import StartStep

                refiner.start = tuple(StartStep.from_dict(st, source) for st in d["start"])
            if d.get("per_case"):
                from hypera_nnunet.refine.case_policy import RidgeBandit
                from hypera_nnunet.refine.per_case import ClassPolicy

                for key, pc in d["per_case"].items():
                    cands = tuple(tuple(TunedStep(a["step"], refiner.steps[a["step"]].params_from_dict(a["params"]))
                                        for a in c) for c in pc["candidates"])
                    refiner.per_case[int(key)] = ClassPolicy(int(key), cands, RidgeBandit.from_dict(pc["policy"]))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise HyperaError(f"{source} is not a valid refiner: {type(e).__name__}: {e}") from None
        return refiner


def _upgrade_v1(d: dict) -> dict:
    """Format version 1 (steps called agents) in version 2's keys and names."""
    chains = {lab: {"name": pol.get("name", lab),
                    "steps": [{"step": canonical_name(a["agent"]), "params": a["params"]} for a in pol["actions"]]}
              for lab, pol in d["policies"].items()}
    return {**d, "version": 2, "steps": [canonical_name(n) for n in d["agents"]], "chains": chains}


def _jsonable_trial(t: dict) -> dict:
    return {"steps": t["steps"], "accepted": t["accepted"],
            "dice_before": {str(k): v for k, v in t["dice_before"].items()},
            "dice_after": {str(k): v for k, v in t["dice_after"].items()}}


def summarize(cases: Sequence[FitCase], segs: Sequence[np.ndarray], labels: Sequence[int],
              tolerance_mm: float) -> dict:
    """Per-class mean Dice, HD95 and NSD over cases (nanmean), with how many cases have HD95 undefined."""
    per = [metrics.class_metrics(s, c.ref, labels, c.spacing, tolerance_mm) for s, c in zip(segs, cases)]
    out = {}
    for lab in labels:
        vals = [p[lab] for p in per]
        out[str(lab)] = {"Dice": metrics.nanmean(v["Dice"] for v in vals),
                         "HD95": metrics.nanmean(v["HD95"] for v in vals),
                         "NSD": metrics.nanmean(v["NSD"] for v in vals),
                         "HD95_undefined_cases": int(sum(math.isnan(v["HD95"]) for v in vals)),
                         "n_cases": len(vals)}
    return out
