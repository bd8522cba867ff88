"""Learning-curve extrapolation: a trial's final value predicted from its first epochs, and a pruner that uses it.

An ensemble of parametric saturating curves (after Domhan, Springenberg & Hutter 2015, "Speeding up automatic
hyperparameter optimization of deep neural networks by extrapolation of learning curves", IJCAI, which combines
eleven families by MCMC), fitted here by least squares and combined with Akaike weights (Burnham & Anderson 2002):
each family's weight is ``exp(-AICc / 2)``, normalised, so a family that fits the observed epochs much worse gets
almost none. The prediction is the weighted mean at the last epoch; its spread is the weighted sd of the families'
predictions (model uncertainty only: the noise of one curve is not modelled).

:class:`CurvePruner` stops a trial after ``min_epochs`` when its predicted final value, plus a margin, is below the
best finished trial's value: Optuna's ``BasePruner`` interface, registered as ``curve`` in
:data:`hypera_nnunet.search.study.PRUNERS`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit


def _pow3(x, c, a, alpha):
    return c - a * np.power(x, -alpha)


def _exp3(x, c, a, b):
    return c - a * np.exp(-b * x)


def _mmf(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) / (1.0 + np.power(kappa * x, delta))


def _janoschek(x, alpha, beta, kappa, delta):
    return alpha - (alpha - beta) * np.exp(-kappa * np.power(x, delta))


#: family -> (function, initial parameters, lower bounds, upper bounds); x is the epoch (1-based), y in [0, 1]
FAMILIES: dict[str, tuple[Callable, tuple, tuple, tuple]] = {
    "pow3": (_pow3, (0.8, 0.8, 0.5), (0.0, 0.0, 0.01), (1.5, 5.0, 5.0)),
    "exp3": (_exp3, (0.8, 0.8, 0.1), (0.0, 0.0, 1e-4), (1.5, 5.0, 5.0)),
    "mmf": (_mmf, (0.8, 0.0, 0.1, 2.0), (0.0, -1.0, 1e-4, 0.1), (1.5, 1.0, 10.0, 10.0)),
    "janoschek": (_janoschek, (0.8, 0.0, 0.05, 1.0), (0.0, -1.0, 1e-5, 0.1), (1.5, 1.0, 10.0, 5.0)),
}


@dataclass(frozen=True)
class Extrapolation:
    """The ensemble's prediction at ``at_epoch``: ``mean`` (Akaike-weighted), ``sd`` across families,
    ``weights`` and each family's ``predictions`` (families that did not fit are left out)."""

    at_epoch: int
    mean: float
    sd: float
    weights: dict[str, float]
    predictions: dict[str, float]


def extrapolate(values: Sequence[float], at_epoch: int, families: Sequence[str] = tuple(FAMILIES)) -> Extrapolation:
    """Predict the curve's value at ``at_epoch`` (1-based) from ``values`` (epochs 1..n).

    :raises ValueError: with fewer than five values or when no family fits.
    """
    y = np.asarray(values, dtype=float)
    n = len(y)
    if n < 5:
        raise ValueError(f"at least 5 epochs are needed to extrapolate, got {n}")
    x = np.arange(1, n + 1, dtype=float)
    aicc, preds = {}, {}
    for name in families:
        f, p0, lo, hi = FAMILIES[name]
        k = len(p0)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                popt, _ = curve_fit(f, x, y, p0=p0, bounds=(lo, hi), maxfev=5000)
        except (RuntimeError, ValueError):
            continue
        rss = float(np.sum((f(x, *popt) - y) ** 2))
        if not np.isfinite(rss) or n - k - 1 <= 0:
            continue
        aicc[name] = n * math.log(max(rss / n, 1e-300)) + 2 * k + 2 * k * (k + 1) / (n - k - 1)
        preds[name] = float(f(float(at_epoch), *popt))
    if not preds:
        raise ValueError("no curve family could be fitted")
    best = min(aicc.values())
    w = {k: math.exp(-(v - best) / 2) for k, v in aicc.items()}
    total = sum(w.values())
    w = {k: v / total for k, v in w.items()}
    mean = sum(w[k] * preds[k] for k in preds)
    sd = math.sqrt(sum(w[k] * (preds[k] - mean) ** 2 for k in preds))
    return Extrapolation(int(at_epoch), float(mean), float(sd), w, preds)


class CurvePruner:
    """Prune a trial whose extrapolated final value cannot reach the best finished trial's.

    :param max_epochs: the epoch the prediction is for (the search's largest budget).
    :param min_epochs: epochs before the first prediction (>= 5).
    :param margin: a trial is stopped when ``prediction + margin + z * sd`` is below the best finished value.
    :param z: how many of the ensemble's sds a trial gets in its favour.
    :param every: predict every N epochs after ``min_epochs`` (fits cost milliseconds, but not nothing).
    """

    def __init__(self, max_epochs: int, min_epochs: int = 5, margin: float = 0.0, z: float = 1.0,
                 every: int = 1) -> None:
        if min_epochs < 5:
            raise ValueError(f"min_epochs must be >= 5 to fit the curves, got {min_epochs}")
        self.max_epochs, self.min_epochs, self.margin, self.z, self.every = (int(max_epochs), int(min_epochs),
                                                                             float(margin), float(z), int(every))

    def prune(self, study, trial) -> bool:
        import optuna

        steps = trial.intermediate_values
        if not steps:
            return False
        last = max(steps)
        if last < self.min_epochs or last >= self.max_epochs or (last - self.min_epochs) % self.every:
            return False
        done = [t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None]
        if not done:
            return False
        values = [steps[e] for e in sorted(steps)]
        try:
            ex = extrapolate(values, self.max_epochs)
        except ValueError:
            return False
        return ex.mean + self.margin + self.z * ex.sd < max(done)
