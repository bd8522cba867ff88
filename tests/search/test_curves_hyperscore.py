"""Learning-curve extrapolation on curves of known form, the curve pruner inside an Optuna study, and the
HyperScore's fit, which cannot order trials differently from the value it transforms."""

from __future__ import annotations

import numpy as np
import pytest

from hypera_nnunet.search.curves import CurvePruner, extrapolate
from hypera_nnunet.search.hyperscore import fit_hyperscore, hyperscore, promotion_rates, top_k_hits

optuna = pytest.importorskip("optuna")


def test_a_power_law_curve_is_extrapolated_to_its_value():
    x = np.arange(1, 16)
    ex = extrapolate(0.85 - 0.6 * x ** -0.7, at_epoch=50)
    assert ex.mean == pytest.approx(0.85 - 0.6 * 50 ** -0.7, abs=2e-3)
    assert max(ex.weights, key=ex.weights.get) in ("pow3", "mmf", "janoschek")  # exact or flexible fits
    assert sum(ex.weights.values()) == pytest.approx(1.0)


def test_an_exponential_curve_and_its_spread():
    x = np.arange(1, 13)
    ex = extrapolate(0.8 - 0.7 * np.exp(-0.15 * x), at_epoch=40)
    assert ex.mean == pytest.approx(0.8 - 0.7 * np.exp(-0.15 * 40), abs=0.01)
    assert ex.predictions["exp3"] == pytest.approx(0.8 - 0.7 * np.exp(-0.15 * 40), abs=1e-4)
    assert ex.sd >= 0
    with pytest.raises(ValueError, match="at least 5 epochs"):
        extrapolate([0.1, 0.2, 0.3, 0.4], 10)


def _curve_study(pruner, finals):
    study = optuna.create_study(direction="maximize", pruner=pruner)
    study.add_trial(optuna.trial.create_trial(value=0.9, params={}, distributions={},
                                              intermediate_values={e: 0.9 - 0.5 / e for e in range(1, 31)}))
    epochs = {}

    def objective(trial):
        final = finals[trial.number - 1]
        for e in range(1, 31):
            trial.report(final - 0.5 * e ** -0.8, e)
            if trial.should_prune():
                epochs[trial.number] = e
                raise optuna.TrialPruned()
        epochs[trial.number] = 30
        return final

    study.optimize(objective, n_trials=len(finals))
    return study, epochs


def test_the_curve_pruner_stops_a_hopeless_trial_and_keeps_a_promising_one():
    study, epochs = _curve_study(CurvePruner(max_epochs=30, min_epochs=5, margin=0.02), finals=[0.5, 0.95])
    states = [t.state for t in study.get_trials()][1:]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]
    assert epochs == {1: 5, 2: 30}  # stopped at its first prediction; the other one ran to its end


def test_the_hyperscore_orders_trials_as_its_input_does():
    rng = np.random.default_rng(0)
    low = rng.uniform(0.05, 0.9, 40)
    full = low + rng.normal(0, 0.1, 40)
    for beta, gamma, kappa in ((2.0, 0.0, 1.5), (0.5, -1.0, 3.0)):
        s = hyperscore(low, beta, gamma, kappa)
        assert np.array_equal(np.argsort(s), np.argsort(low))  # strictly increasing in V
        assert top_k_hits(s, full, 5) == top_k_hits(low, full, 5)
    fit = fit_hyperscore(low, full, n_trials=60)
    if fit["same_order_as_low"]:  # no saturation: exactly V's correlation
        assert fit["rho_hyperscore"] == pytest.approx(fit["rho_low"], abs=1e-12)


def test_saturation_ties_are_the_only_way_the_hyperscore_reorders():
    """sigmoid(10 ln v + 40) rounds to 1.0 for the three largest v: they tie, which here raises Spearman's rho
    from 0.6 to 8 / sqrt(80) (ranks [1, 2, 4, 4, 4] against [1, 2, 5, 4, 3])."""
    from scipy.stats import spearmanr

    low, full = np.array([0.2, 0.5, 0.96, 0.97, 0.98]), np.array([0.0, 1.0, 4.0, 3.0, 2.0])
    s = hyperscore(low, 10.0, 40.0, 1.0)
    assert s[2] == s[3] == s[4] == 200.0 and s[0] < s[1] < s[2]
    assert spearmanr(low, full).statistic == pytest.approx(0.6)
    assert spearmanr(s, full).statistic == pytest.approx(8 / np.sqrt(80))
    assert hyperscore([1.0], 0.0, 0.0, 1.0)[0] == pytest.approx(100 * 1.5)  # sigmoid(0) = 1/2
    rates = promotion_rates([low], [full], 1, {"beta": 10.0, "gamma": 40.0, "kappa": 1.0})
    assert rates == {"k": 1, "studies": 1, "raw": 0.0, "hyperscore": 1.0}  # the tie's first index is the best
