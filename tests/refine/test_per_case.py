"""Per-case refinement on synthetic folders whose cases need different fixes: fit, the guarded acceptance with
exact values, the refiner file's round trip, and apply giving what the fit chose."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from refine_testdata import synthetic_prediction, write_case, write_model

from hypera_nnunet.refine.apply import load_refiner
from hypera_nnunet.refine.fit import fit_refiner
from hypera_nnunet.refine.per_case import Tolerances, accept_guarded
from hypera_nnunet.refine.search import SearchSettings

SMALL = SearchSettings(population=4, iterations=1, max_search_cases=12)


def test_the_acceptance_rule_exactly():
    before = {1: {"Dice": 0.80, "HD95": 3.0, "NSD": 0.90}, 2: {"Dice": 0.70, "HD95": 4.0, "NSD": 0.85}}
    up = {1: {"Dice": 0.82, "HD95": 3.0, "NSD": 0.90}, 2: dict(before[2])}
    assert accept_guarded(before, up, 1, 0.0, Tolerances()) == (True, "")
    assert accept_guarded(before, up, 1, 0.03, Tolerances())[0] is False  # not more than min_gain
    hd = {1: {"Dice": 0.82, "HD95": 3.5, "NSD": 0.90}, 2: dict(before[2])}
    ok, why = accept_guarded(before, hd, 1, 0.0, Tolerances())
    assert not ok and why == "class 1's HD95 3.0000 -> 3.5000 is worse by more than 0.0"
    assert accept_guarded(before, hd, 1, 0.0, Tolerances(hd95_mm=0.5))[0]  # within the stated tolerance
    nsd = {1: dict(up[1]), 2: {"Dice": 0.70, "HD95": 4.0, "NSD": 0.80}}
    assert accept_guarded(before, nsd, 1, 0.0, Tolerances())[1] == ("class 2's NSD 0.8500 -> 0.8000 is worse by "
                                                                   "more than 0.0")
    nan = {1: dict(up[1]), 2: {"Dice": 0.70, "HD95": math.nan, "NSD": 0.85}}
    assert accept_guarded(before, nan, 1, 0.0, Tolerances())[0]  # an undefined HD95 is not compared


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """Two folds; half the cases under-segmented (foreground biased down), half over-segmented."""
    root = tmp_path_factory.mktemp("pc")
    m = write_model(root, n_cases=2, folds=2)
    rng = np.random.default_rng(3)
    for i in range(12):
        case = f"mix_{i:03d}"
        gt, probs, seg = synthetic_prediction((24, 28, 24), rng, bias=1.5 if i % 4 < 2 else -1.0, blob=False)
        write_case(m["val"][i % 2], case, seg, probs)
        write_case(m["gt"], case, gt, None)
    out = root / "refiner.json"
    result = fit_refiner(m["val"], m["gt"], out, steps=["foreground_prior", "threshold_grow"], search=SMALL,
                         policy="per-case", log=lambda s: None)
    return m, out, result


def test_the_fit_reports_held_out_numbers_per_class(mixed):
    _, out, result = mixed
    pc = result["fit"]["per_case"]["classes"]
    assert set(pc) == {"1", "2"}
    for entry in pc.values():
        assert entry["candidates"][0] == []  # the identity is always candidate 0
        if "per_case_cv" in entry:
            assert set(entry["per_case_cv"]) == {"Dice", "HD95", "NSD"} and sum(entry["cv_choice_counts"]) == 14
    r = json.loads(out.read_text())
    assert r["version"] == (3 if r.get("per_case") else 2)


def test_apply_is_deterministic_and_survives_the_round_trip(mixed):
    m, out, result = mixed
    refiner = load_refiner(out)
    again = load_refiner(out)
    rng = np.random.default_rng(11)
    gt, probs, seg = synthetic_prediction((24, 28, 24), rng, bias=1.5, blob=False)
    a, log_a = refiner.refine(seg, probs, (1.0, 1.0, 1.0))
    b, log_b = again.refine(seg, probs, (1.0, 1.0, 1.0))
    assert np.array_equal(a, b) and log_a == log_b
    if refiner.per_case:
        assert set(log_a) <= set(refiner.labels_fg)
        assert all(len(v) == 1 and "per_case_candidate" in v[0] for v in log_a.values())
