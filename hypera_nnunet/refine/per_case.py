"""Per-case refinement (issue 17): each case gets, per class, the candidate refinement its state predicts best.

After the global fit (:meth:`.refiner.Refiner.fit`: one chain per class for all cases), each class gets a small
set of candidates: the identity, the accepted chain and its prefixes, and every searched step alone with the
parameters its search found best. On the fit cases (cross-validation predictions, labels known) every candidate is
applied to every case, which gives its Dice gain over the identity in that case (:func:`.case_policy.guarded_gain`:
a candidate that lowers another class's Dice beyond ``other_tolerance`` gets ``-inf``). A ridge bandit
(:class:`.case_policy.RidgeBandit`) regresses the gains on the case's state (:mod:`.case_state`, computed in the
work box from the current label map and nnU-Net's probabilities, no labels).

**Acceptance guards every metric**, cross-validated: the cases of each nnU-Net fold get the choices of a policy fit
on the other folds' cases; the class's per-case policy is kept only if, with those held-out choices, its mean
Dice rises by more than ``min_gain`` over the global fit's result and no class gets worse by more than the
tolerances in Dice, HD95 (mm) or NSD (:mod:`.metrics`, the surfel-area definition). Otherwise the class keeps the
global chain. Classes go in label order, each starting from the result of the classes before it, in fit as in
apply. Apply is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hypera_nnunet.refine import metrics
from hypera_nnunet.refine.case_policy import RidgeBandit, guarded_gain
from hypera_nnunet.refine.case_state import case_state, state_vector


@dataclass(frozen=True)
class Tolerances:
    """How much worse a class may get, per metric, for a per-case policy to be accepted."""

    dice: float = 0.0
    hd95_mm: float = 0.0
    nsd: float = 0.0


@dataclass
class ClassPolicy:
    """One class's candidates (index 0: the identity) and the bandit that picks one per case."""

    label: int
    candidates: tuple[tuple, ...]
    bandit: RidgeBandit


def candidates_for(refiner, report: dict, label: int) -> list[tuple]:
    """The identity, the accepted chain and its prefixes, and each searched step alone (duplicates removed)."""
    from hypera_nnunet.refine.refiner import TunedStep

    chain = tuple(refiner.chains.get(label).steps) if label in refiner.chains else ()
    out: list[tuple] = [()]
    for k in range(len(chain), 0, -1):
        out.append(chain[:k])
    for s in report["classes"].get(str(label), {}).get("search", []):
        step = refiner.steps[s["step"]]
        if s.get("best_params") is None:
            continue
        params = step.params_from_dict(s["best_params"])
        if not step.is_identity(params):
            out.append((TunedStep(s["step"], params),))
    seen, unique = set(), []
    for c in out:
        key = tuple((a.step, str(a.to_dict()["params"])) for a in c)
        if key not in seen:
            seen.add(key)
            unique.append(c)
    return unique


def _state(seg_crop: np.ndarray, probs_crop: np.ndarray, labels, spacing) -> np.ndarray:
    return state_vector(case_state(seg_crop, probs_crop, labels, spacing), labels)


def _summary(segs, cases, labels, tol_mm) -> dict[int, dict[str, float]]:
    per = [metrics.class_metrics(s, c.ref, labels, c.spacing, tol_mm) for s, c in zip(segs, cases)]
    return {lab: {m: metrics.nanmean(p[lab][m] for p in per) for m in ("Dice", "HD95", "NSD")} for lab in labels}


def accept_guarded(before: dict, after: dict, label: int, min_gain: float, tol: Tolerances) -> tuple[bool, str]:
    """The acceptance rule above, on per-class mean Dice, HD95 and NSD; returns (accepted, why not)."""
    b, a = before[label]["Dice"], after[label]["Dice"]
    if not (a > b + min_gain):
        return False, f"class {label}'s Dice {b:.4f} -> {a:.4f} does not rise by more than {min_gain}"
    for lab in before:
        for m, worse, t in (("Dice", lambda x, y: y < x, tol.dice), ("HD95", lambda x, y: y > x, tol.hd95_mm),
                            ("NSD", lambda x, y: y < x, tol.nsd)):
            x, y = before[lab][m], after[lab][m]
            if math.isnan(x) or math.isnan(y):
                continue
            if worse(x, y) and abs(y - x) > t:
                return False, f"class {lab}'s {m} {x:.4f} -> {y:.4f} is worse by more than {t}"
    return True, ""


def fit_per_case(refiner, cases: Sequence, labels: Sequence[int], report: dict, *, l2: float = 1.0,
                 margin: float = 0.0, other_tolerance: float = 0.0, tolerances: Tolerances = Tolerances(),
                 log: Callable[[str], None] = lambda m: None) -> tuple[dict[int, ClassPolicy], dict]:
    """Fit and accept a per-case policy per class (see the module); returns the accepted policies and a report."""
    labels = [int(x) for x in labels]
    tol_mm = refiner.weights.nsd_tolerance_mm
    working = [c.seg for c in cases]
    policies: dict[int, ClassPolicy] = {}
    out_report: dict = {"classes": {}}
    folds = np.array([-1 if c.fold is None else int(c.fold) for c in cases])
    fold_ids = sorted(set(folds.tolist()))
    if len(fold_ids) < 2:  # no folds known: five interleaved groups
        folds = np.arange(len(cases)) % 5
        fold_ids = sorted(set(folds.tolist()))
    for lab in labels:
        cands = candidates_for(refiner, report, lab)
        fit_idx = [i for i, c in enumerate(cases) if c.work is not None]
        states = np.stack([_state(working[i][cases[i].work], cases[i].probs, labels, cases[i].spacing)
                           for i in fit_idx]) if fit_idx else np.zeros((0, 1))
        outs = {k: [refiner._apply_chain(working[i], cases[i], lab, cand) for i in fit_idx]
                for k, cand in enumerate(cands)}
        before = [{m: metrics.dice(working[i] == m, cases[i].ref == m) for m in labels} for i in fit_idx]
        gains = np.array([[guarded_gain(before[j], {m: metrics.dice(outs[k][j] == m, cases[i].ref == m)
                                                    for m in labels}, lab, other_tolerance)
                           for k in range(len(cands))] for j, i in enumerate(fit_idx)])
        entry = {"candidates": [[a.to_dict() for a in c] for c in cands], "cases": len(fit_idx)}
        if len(cands) < 2 or len(fit_idx) < 2 * len(fold_ids):
            entry.update(accepted=False, why="fewer than two candidates or too few cases")
            out_report["classes"][str(lab)] = entry
            continue
        cv_choice = np.zeros(len(fit_idx), dtype=int)
        f_of = folds[fit_idx]
        for f in fold_ids:
            train, test = f_of != f, f_of == f
            if not test.any() or train.sum() < 2:
                continue
            pol = RidgeBandit(l2=l2, margin=margin).fit(states[train], gains[train])
            cv_choice[test] = pol.choose(states[test])
        cv_segs = list(working)
        for j, i in enumerate(fit_idx):
            cv_segs[i] = outs[int(cv_choice[j])][j]
        # the comparison: the held-out per-case choices against the global fit (both from the same starting point)
        ref_segs = list(working)
        chain = refiner.chains.get(lab)
        if chain is not None and chain.steps:
            ref_segs = [refiner._apply_chain(s, c, lab, chain.steps) for s, c in zip(working, cases)]
        s_ref, s_cv = _summary(ref_segs, cases, labels, tol_mm), _summary(cv_segs, cases, labels, tol_mm)
        ok, why = accept_guarded(s_ref, s_cv, lab, refiner.min_gain, tolerances)
        entry.update(accepted=ok, why=why, global_fit=s_ref[lab], per_case_cv=s_cv[lab],
                     cv_choice_counts=np.bincount(cv_choice, minlength=len(cands)).tolist())
        if ok:
            pol = RidgeBandit(l2=l2, margin=margin).fit(states, gains)
            policies[lab] = ClassPolicy(lab, tuple(cands), pol)
            chosen = pol.choose(states)
            for j, i in enumerate(fit_idx):
                working[i] = outs[int(chosen[j])][j]
            entry["choice_counts"] = np.bincount(chosen, minlength=len(cands)).tolist()
        else:
            working = ref_segs
        log(f"class {lab}: per-case policy {'accepted' if ok else 'not accepted: ' + why} "
            f"(held-out Dice {s_ref[lab]['Dice']:.4f} global fit -> {s_cv[lab]['Dice']:.4f} per case)")
        out_report["classes"][str(lab)] = {k: ({str(a): b for a, b in v.items()} if isinstance(v, dict) else v)
                                           for k, v in entry.items()}
    return policies, out_report


def apply_per_case(refiner, s: np.ndarray, p: np.ndarray, labels: Sequence[int], spacing,
                   act: Callable) -> tuple[np.ndarray, dict[int, int]]:
    """Apply the per-case policies to one case's work box (``s`` label map, ``p`` probabilities), class by
    class; classes without a policy take their global chain. Returns the new crop and each class's choice."""
    chosen = {}
    for lab in sorted(set(refiner.chains) | set(refiner.per_case)):
        pol = refiner.per_case.get(lab)
        if pol is None:
            steps = refiner.chains[lab].steps if lab in refiner.chains else ()
        else:
            k = int(pol.bandit.choose(_state(s, p, labels, spacing)[None])[0])
            chosen[lab] = k
            steps = pol.candidates[k]
        for action in steps:
            s = act(s, lab, action)
    return s, chosen
