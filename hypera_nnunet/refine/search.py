"""Cross-entropy-method (CEM) search over one agent's bounded parameters.

This is how ``fit`` "learns" an agent: a derivative-free stochastic search, not gradient-based RL. Each
iteration samples ``population`` points in the unit cube around a Gaussian (clipped to [0, 1]), decodes
them into the agent's parameters, scores them with the objective (the mean reward over the search cases),
and refits the Gaussian to the best ``elite_fraction``. The identity parameters are always scored, so the
search can only return something at least as good as doing nothing. All randomness comes from the
``np.random.Generator`` passed in (the coordinator's own).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine.agents import SegmentationAgent


@dataclass(frozen=True)
class SearchSettings:
    """Budget of the search per agent and class: ``1 + population × iterations`` objective calls at most."""

    population: int = 8
    iterations: int = 3
    elite_fraction: float = 0.25
    init_std: float = 0.25
    min_std: float = 0.02
    max_search_cases: int = 64

    def __post_init__(self) -> None:
        if self.population < 1 or self.iterations < 0 or self.max_search_cases < 1:
            raise ConfigError("population and max_search_cases must be >= 1, iterations >= 0")
        if not (0 < self.elite_fraction <= 1) or self.init_std <= 0 or self.min_std < 0:
            raise ConfigError("need 0 < elite_fraction <= 1, init_std > 0, min_std >= 0")


@dataclass(frozen=True)
class SearchResult:
    best: object
    best_value: float
    neutral_value: float
    evaluations: int


def cem_search(objective: Callable[[object], float], agent: SegmentationAgent, rng: np.random.Generator,
               settings: SearchSettings = SearchSettings()) -> SearchResult:
    """Maximise ``objective(params)`` over ``agent``'s parameter space, starting from the identity."""
    cache: dict[object, float] = {}

    def score(params) -> float:
        if params not in cache:
            value = float(objective(params))
            cache[params] = value if math.isfinite(value) else -math.inf
        return cache[params]

    neutral = agent.neutral()
    neutral_value = score(neutral)
    best, best_value = neutral, neutral_value
    mean = agent.encode(neutral)
    std = np.full(mean.shape, settings.init_std)
    n_elite = max(1, int(round(settings.elite_fraction * settings.population)))
    for _ in range(settings.iterations):
        u = np.clip(mean + std * rng.standard_normal((settings.population, mean.size)), 0.0, 1.0)
        cands = [agent.decode(row) for row in u]
        values = np.array([score(c) for c in cands])
        order = np.argsort(-values, kind="stable")
        for i in order[:1]:
            if values[i] > best_value:
                best, best_value = cands[i], float(values[i])
        elite = u[order[:n_elite]]
        mean = elite.mean(axis=0)
        std = np.maximum(elite.std(axis=0), settings.min_std)
    return SearchResult(best, best_value, neutral_value, len(cache))
