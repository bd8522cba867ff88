"""The cross-entropy-method search over a refinement step's bounded parameters, on hand-made objectives."""

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import steps as st
from hypera_nnunet.refine.search import SearchSettings, cem_search, elite_update


@dataclass(frozen=True)
class XParams(st._BoundedParams):
    x: float = 0.5
    space: ClassVar = (st.Param("x", "float", 0.0, 1.0),)
    step_name: ClassVar = "x"


class XStep(st.RefinementStep):
    """A one-parameter step (identity x = 0.5, encoded as u = x) for exact checks of the search."""

    name = "x"
    Params = XParams


@dataclass(frozen=True)
class FlagParams(st._BoundedParams):
    flag: bool = False
    space: ClassVar = (st.Param("flag", "bool"),)
    step_name: ClassVar = "flag"


class FlagStep(st.RefinementStep):
    name = "flag"
    Params = FlagParams


def recording(fn):
    calls = []

    def objective(p):
        calls.append(p)
        return fn(p)

    return objective, calls


def test_elite_update_is_the_mean_and_population_std_of_the_best():
    u = np.array([[0.1, 0.9], [0.5, 0.5], [0.3, 0.7], [0.9, 0.1]])
    mean, std = elite_update(u, np.array([1.0, 4.0, 3.0, 2.0]), n_elite=2, min_std=0.02)
    np.testing.assert_allclose(mean, [0.4, 0.6], rtol=0, atol=1e-15)  # rows 1 and 2
    np.testing.assert_allclose(std, [0.1, 0.1], rtol=0, atol=1e-15)  # |0.5 - 0.4|, ddof 0
    mean, std = elite_update(u, np.array([2.0, 2.0, 1.0, 2.0]), n_elite=1, min_std=0.05)
    assert mean.tolist() == [0.1, 0.9]  # a tie keeps the earlier sample
    assert std.tolist() == [0.05, 0.05]  # one sample: std 0, raised to the floor


def test_n_elite():
    assert SearchSettings(population=8, elite_fraction=0.25).n_elite == 2
    assert SearchSettings(population=3, elite_fraction=0.1).n_elite == 1
    assert SearchSettings(population=10, elite_fraction=1.0).n_elite == 10


def test_first_population_is_the_seeded_gaussian_around_the_identity():
    objective, calls = recording(lambda p: -abs(p.x - 0.9))
    settings = SearchSettings(population=5, iterations=1, init_std=0.25)
    r = cem_search(objective, XStep(), np.random.default_rng(7), settings)
    z = np.random.default_rng(7).standard_normal((5, 1))[:, 0]
    expected = [float(v) for v in np.clip(0.5 + 0.25 * z, 0.0, 1.0)]
    assert calls[0] == XParams(0.5)  # the identity is scored first
    assert [c.x for c in calls[1:]] == expected
    best = max(expected, key=lambda x: -abs(x - 0.9))
    assert r.best == XParams(best) and r.best_value == -abs(best - 0.9)
    assert r.neutral_value == -0.4 and r.evaluations == 6


def test_cem_finds_the_optimum_of_a_1d_objective():
    r = cem_search(lambda p: -(p.x - 0.8) ** 2, XStep(), np.random.default_rng(0),
                   SearchSettings(population=16, iterations=10, min_std=0.001))
    assert abs(r.best.x - 0.8) < 0.005
    assert r.neutral_value == pytest.approx(-0.09, abs=1e-15)


def test_cem_finds_the_optimum_of_a_2d_objective_on_a_real_step():
    step = st.BoundaryLevelStep()  # sigma_mm in [0, 2], level in [0.3, 0.7]; the objective also wants band 1

    def objective(p):  # best at sigma 0.6 mm, level 0.58 (unit cube: 0.3 and 0.7, within reach of the identity)
        return -(p.sigma_mm - 0.6) ** 2 - (p.level - 0.58) ** 2 - (p.band != 1)

    r = cem_search(objective, step, np.random.default_rng(0),
                   SearchSettings(population=16, iterations=10, min_std=0.005))
    assert abs(r.best.sigma_mm - 0.6) < 0.005 and abs(r.best.level - 0.58) < 0.005 and r.best.band == 1


def test_the_same_seed_gives_the_same_sequence_and_another_seed_another():
    def run(seed):
        objective, calls = recording(lambda p: -(p.sigma_mm - 1.2) ** 2 - (p.level - 0.62) ** 2)
        cem_search(objective, st.BoundaryLevelStep(), np.random.default_rng(seed),
                   SearchSettings(population=6, iterations=3))
        return calls

    a, b, c = run(3), run(3), run(4)
    assert a == b and len(a) == 1 + 6 * 3
    assert a[0] == c[0] == st.BoundaryLevelStep().neutral() and a[1:] != c[1:]


def test_the_identity_is_kept_unless_something_scores_strictly_higher():
    step = XStep()
    r = cem_search(lambda p: 0.0 if p == step.neutral() else -1.0, step, np.random.default_rng(0),
                   SearchSettings(population=4, iterations=2))
    assert (r.best, r.best_value, r.neutral_value, r.evaluations) == (step.neutral(), 0.0, 0.0, 9)
    flat = cem_search(lambda p: 0.0, step, np.random.default_rng(0), SearchSettings(population=4, iterations=2))
    assert flat.best == step.neutral()  # equal scores never replace the identity


def test_each_distinct_parameter_set_is_scored_once():
    objective, calls = recording(lambda p: 1.0 if p.flag else 0.0)
    r = cem_search(objective, FlagStep(), np.random.default_rng(0), SearchSettings(population=8, iterations=3))
    assert calls[0] == FlagParams(False) and sorted(c.flag for c in calls) == [False, True]
    assert r.evaluations == 2 and r.best == FlagParams(True) and r.best_value == 1.0


def test_non_finite_scores_rank_below_everything():
    r = cem_search(lambda p: math.nan if p.x != 0.5 else -5.0, XStep(), np.random.default_rng(0),
                   SearchSettings(population=4, iterations=1))
    assert r.best == XParams(0.5) and r.best_value == -5.0
    r = cem_search(lambda p: math.nan, XStep(), np.random.default_rng(0), SearchSettings(population=4, iterations=1))
    assert r.best == XParams(0.5) and r.neutral_value == -math.inf


def test_zero_iterations_scores_only_the_identity():
    objective, calls = recording(lambda p: 1.0)
    r = cem_search(objective, XStep(), np.random.default_rng(0), SearchSettings(iterations=0))
    assert calls == [XParams(0.5)] and r.evaluations == 1


@pytest.mark.parametrize("kwargs", [{"population": 0}, {"iterations": -1}, {"max_search_cases": 0},
                                    {"elite_fraction": 0.0}, {"elite_fraction": 1.5}, {"init_std": 0.0},
                                    {"min_std": -0.1}])
def test_search_settings_are_checked(kwargs):
    with pytest.raises(ConfigError):
        SearchSettings(**kwargs)
