"""The deep-ensemble surrogate: its posterior on a 1-D toy, its encoding, and the sampler finding a 1-D optimum."""

from __future__ import annotations

import math

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from hypera_nnunet.search.ensemble_sampler import DeepEnsemble, EnsembleSampler, _decode, _encode_value  # noqa: E402


def test_the_posterior_fits_the_data_and_widens_away_from_it():
    x = np.linspace(0.0, 0.5, 12)[:, None]
    y = np.sin(2 * math.pi * x[:, 0])
    model = DeepEnsemble(members=5, seed=0).fit(x, y)
    at_data = model.predict(x)
    assert at_data.shape == (5, 12)
    err = np.abs(at_data.mean(0) - y)  # each member saw a bootstrap resample: the mean fits the 12 points loosely
    assert err.mean() < 0.08 and err.max() < 0.2
    far = model.predict(np.array([[1.0]]))
    assert far.std(0)[0] > 5 * at_data.std(0).mean()  # members disagree where there is no data
    again = DeepEnsemble(members=5, seed=0).fit(x, y).predict(np.array([[0.75]]))
    assert np.array_equal(again, model.predict(np.array([[0.75]])))  # same seed, same posterior


def test_encoding_round_trips_every_kind():
    d = optuna.distributions
    lr = d.FloatDistribution(1e-3, 1e-1, log=True)
    assert _encode_value(lr, 1e-2) == [pytest.approx(0.5)] and _decode(lr, np.array([0.5])) == pytest.approx(1e-2)
    bs = d.IntDistribution(16, 48, step=16)
    assert _encode_value(bs, 32) == [0.5] and _decode(bs, np.array([0.49])) == 32
    assert _decode(bs, np.array([1.7])) == 48  # clipped into the range
    ch = d.CategoricalDistribution([2, 4, 8])
    assert _encode_value(ch, 4) == [0.0, 1.0, 0.0] and _decode(ch, np.array([0.1, 0.2, 0.9])) == 8


def test_the_sampler_finds_a_1d_optimum_after_its_random_start():
    sampler = EnsembleSampler(seed=0, n_startup=6)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda t: -(t.suggest_float("x", 0.0, 1.0) - 0.7) ** 2, n_trials=14)
    assert sampler.last_fit["n"] == 13  # the 14th proposal came from the model, fitted on 13 trials
    model_trials = [t.params["x"] for t in study.trials[6:]]
    assert abs(study.best_params["x"] - 0.7) < 0.05
    assert np.median([abs(x - 0.7) for x in model_trials]) < 0.1  # the model's proposals cluster at the optimum


def test_pruned_trials_enter_at_their_fidelity():
    from optuna.trial import TrialState, create_trial

    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    done = create_trial(params={"x": 0.25}, distributions=dist, value=0.9, intermediate_values={1: 0.1, 9: 0.8})
    pruned = create_trial(params={"x": 0.75}, distributions=dist, state=TrialState.PRUNED,
                          intermediate_values={1: 0.2, 3: 0.4})
    rows = EnsembleSampler.training_rows([done, pruned], ["x"], dist)
    assert rows == [([0.25], 0.9, 1.0), ([0.75], 0.4, 3 / 9)]


def test_expected_improvement_exactly():
    from scipy.stats import norm

    from hypera_nnunet.search.ensemble_sampler import expected_improvement

    ei = expected_improvement(np.array([1.0, 0.5, 2.0, 0.0]), np.array([1.0, 0.0, 0.0, 2.0]), 1.0)
    # z = 0: sd * phi(0); sd 0: max(mean - best, 0); z = -0.5 with sd 2
    assert ei[0] == pytest.approx(norm.pdf(0.0), abs=1e-15) and ei[1] == 0.0 and ei[2] == 1.0
    assert ei[3] == pytest.approx(2.0 * (-0.5 * norm.cdf(-0.5) + norm.pdf(-0.5)), abs=1e-15)


def test_the_ei_variant_finds_a_1d_optimum_in_its_trust_region():
    sampler = EnsembleSampler(seed=0, n_startup=6, acquisition="ei")
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: -(t.suggest_float("x", 0.0, 1.0) - 0.7) ** 2, n_trials=14)
    assert sampler.last_fit["member"] is None and sampler.last_fit["n"] == 13
    assert abs(study.best_params["x"] - 0.7) < 0.05
    with pytest.raises(ValueError, match="thompson or ei"):
        EnsembleSampler(acquisition="ucb")
