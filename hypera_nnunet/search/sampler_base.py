"""The part of Optuna's ``BaseSampler`` interface that this package's samplers share: a random start, the
intersection search space, and per-sampler generators (never the global ones)."""

from __future__ import annotations

import numpy as np
import optuna


class RandomStartSampler(optuna.samplers.BaseSampler):
    """A sampler whose :meth:`sample_relative` (the subclass's) proposes every parameter of the intersection
    search space; parameters outside it, and every proposal the subclass declines (``{}``), are Optuna's random
    sampler's.

    :param seed: the sampler's numpy generator and its random sampler.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._space = optuna.search_space.IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        self._rng = np.random.default_rng()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study, trial):
        return self._space.calculate(study)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study, trial) -> None:
        self._random.before_trial(study, trial)

    def after_trial(self, study, trial, state, values) -> None:
        self._random.after_trial(study, trial, state, values)
