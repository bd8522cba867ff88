"""The cross-entropy-method search over an agent's bounded parameters."""

import numpy as np
import pytest

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import agents as ag
from hypera_nnunet.refine.search import SearchSettings, cem_search


def test_cem_search_finds_a_known_optimum_and_is_seeded():
    agent = ag.BoundaryAgent()

    def objective(p):  # best at sigma 1.2, level 0.62
        return -(p.sigma_mm - 1.2) ** 2 - (p.level - 0.62) ** 2

    settings = SearchSettings(population=16, iterations=8)
    r1 = cem_search(objective, agent, np.random.default_rng(0), settings)
    r2 = cem_search(objective, agent, np.random.default_rng(0), settings)
    assert r1 == r2
    assert abs(r1.best.sigma_mm - 1.2) < 0.15 and abs(r1.best.level - 0.62) < 0.05
    assert r1.neutral_value == objective(agent.neutral()) and r1.best_value >= r1.neutral_value


def test_cem_search_keeps_the_identity_when_nothing_beats_it():
    agent = ag.ObjectAgent()
    r = cem_search(lambda p: 0.0 if p == agent.neutral() else -1.0, agent, np.random.default_rng(0),
                   SearchSettings(population=4, iterations=2))
    assert r.best == agent.neutral() and r.evaluations <= 1 + 8


def test_search_settings_are_checked():
    with pytest.raises(ConfigError):
        SearchSettings(population=0)
    with pytest.raises(ConfigError):
        SearchSettings(elite_fraction=1.5)
