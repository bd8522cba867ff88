"""Cross-entropy-method (CEM) search over one refinement step's bounded parameters.

This is how ``fit`` tunes a step: a derivative-free stochastic search, not gradient-based RL. Each
iteration samples ``population`` points in the unit cube from a Gaussian (clipped to [0, 1]), decodes
them into the step's parameters, scores them with the objective (the mean reward over the search cases),
and refits the Gaussian to the best ``elite_fraction`` (:func:`elite_update`). The identity parameters are
scored first, and a candidate replaces the best so far only if it scores strictly higher, so the search
returns the identity unless something beats it. Each distinct parameter set is scored once (a cache),
because the integer and boolean parameters make many samples decode to the same set. All randomness comes
from the ``np.random.Generator`` passed in (the refiner's own).

The search is local: the Gaussian starts at the identity with ``init_std`` and each refit shrinks it to the
spread of the elite, so with the default budget it settles within a few tenths of the unit cube around the
identity and need not reach an optimum far from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine.steps import RefinementStep


@dataclass(frozen=True)
class SearchSettings:
    """Budget of the search per step and class: ``1 + population × iterations`` objective calls at most.

    :param population: samples per iteration.
    :param iterations: CEM iterations (0: score the identity only).
    :param elite_fraction: share of each iteration's samples the Gaussian is refitted to (at least one).
    :param init_std: initial standard deviation, in the unit cube, around the identity.
    :param min_std: floor of the refitted standard deviation, so the search never collapses to a point.
    :param max_search_cases: cases the candidates are scored on.
    """

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

    @property
    def n_elite(self) -> int:
        """Samples kept per iteration: ``round(elite_fraction × population)``, at least one."""
        return max(1, int(round(self.elite_fraction * self.population)))


@dataclass(frozen=True)
class SearchResult:
    best: object
    best_value: float
    neutral_value: float
    evaluations: int


def elite_update(u: np.ndarray, values: np.ndarray, n_elite: int, min_std: float) -> tuple[np.ndarray, np.ndarray]:
    """The Gaussian refitted to the ``n_elite`` highest-scoring samples: (mean, std per dimension).

    :param u: samples, shape (population, dimensions).
    :param values: their scores; ties keep the earlier sample (stable order).
    :param n_elite: how many samples to keep.
    :param min_std: floor of the standard deviation (population std, ``ddof=0``).
    """
    order = np.argsort(-np.asarray(values, dtype=float), kind="stable")
    elite = np.asarray(u, dtype=float)[order[:n_elite]]
    return elite.mean(axis=0), np.maximum(elite.std(axis=0), min_std)


def cem_search(objective: Callable[[object], float], step: RefinementStep, rng: np.random.Generator,
               settings: SearchSettings = SearchSettings()) -> SearchResult:
    """Maximise ``objective(params)`` over ``step``'s parameter space, starting from the identity.

    :param objective: score of one parameter set; a non-finite score counts as ``-inf``.
    :param step: the step whose parameters are searched.
    :param rng: the only source of randomness.
    :param settings: the budget.
    """
    cache: dict[object, float] = {}

    def score(params) -> float:
        if params not in cache:
            value = float(objective(params))
            cache[params] = value if math.isfinite(value) else -math.inf
        return cache[params]

    neutral = step.neutral()
    neutral_value = score(neutral)
    best, best_value = neutral, neutral_value
    mean = step.encode(neutral)
    std = np.full(mean.shape, settings.init_std)
    for _ in range(settings.iterations):
        u = np.clip(mean + std * rng.standard_normal((settings.population, mean.size)), 0.0, 1.0)
        cands = [step.decode(row) for row in u]
        values = np.array([score(c) for c in cands])
        top = int(np.argmax(values))  # the first of equal maxima
        if values[top] > best_value:
            best, best_value = cands[top], float(values[top])
        mean, std = elite_update(u, values, settings.n_elite, settings.min_std)
    return SearchResult(best, best_value, neutral_value, len(cache))
