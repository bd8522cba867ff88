"""The HyperScore of SAM-HRL-HS, ``100 x [1 + sigmoid(beta ln V + gamma) ** kappa]``, fitted as the document says
(beta, gamma, kappa by Bayesian optimisation, here Optuna's TPE, to maximise the rank correlation between the
low-fidelity score and the full-fidelity value), and what it can and cannot do.

**It ranks like V, except where it saturates.** For beta > 0 and kappa > 0 the score is a strictly increasing
function of the low-fidelity value V (ln, the sigmoid and a positive power are all increasing), so it orders trials
as V does; for beta < 0 in reverse. The one way it can order them differently is floating-point saturation: where
``sigmoid`` rounds to 1.0 (or 0.0) distinct values of V tie. A fit that maximises a rank correlation in-sample uses
exactly that, as a clip of V at a fitted threshold; such ties can raise or lower a rank correlation by chance.
:func:`fit_hyperscore` reports both correlations and whether the order is V's (``same_order_as_low``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr

RANGES = {"beta": (-10.0, 10.0), "gamma": (-10.0, 10.0), "kappa": (0.1, 10.0)}


def hyperscore(v, beta: float, gamma: float, kappa: float) -> np.ndarray:
    """``100 (1 + sigmoid(beta ln v + gamma) ** kappa)`` for values ``v`` > 0."""
    v = np.asarray(v, dtype=float)
    z = beta * np.log(np.maximum(v, 1e-12)) + gamma
    return 100.0 * (1.0 + (1.0 / (1.0 + np.exp(-z))) ** kappa)


def _rho(a, b) -> float:
    r = spearmanr(a, b).statistic
    return float(r) if np.isfinite(r) else 0.0


def fit_hyperscore(low: Sequence[float], full: Sequence[float], n_trials: int = 200, seed: int = 0) -> dict:
    """Fit beta, gamma, kappa to maximise Spearman's rho between the HyperScore of ``low`` and ``full``.

    :returns: the parameters, the fitted rho, the rho of ``low`` itself, and whether the score orders the trials
        exactly as ``low`` does."""
    import optuna

    low, full = np.asarray(low, float), np.asarray(full, float)
    if len(low) != len(full) or len(low) < 3:
        raise ValueError(f"need at least 3 paired values, got {len(low)} and {len(full)}")

    def objective(trial) -> float:
        p = {k: trial.suggest_float(k, *r) for k, r in RANGES.items()}
        return _rho(hyperscore(low, **p), full)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = study.best_params
    score = hyperscore(low, **best)
    same_order = bool(np.array_equal(np.argsort(score, kind="stable"), np.argsort(low, kind="stable")))
    return {"params": best, "rho_hyperscore": study.best_value, "rho_low": _rho(low, full),
            "same_order_as_low": same_order, "n": len(low)}


def top_k_hits(score: Sequence[float], full: Sequence[float], k: int) -> bool:
    """Whether the trial with the best ``full`` value is among the ``k`` best by ``score`` (promotion)."""
    score = np.asarray(score, float)
    top = np.argsort(-score, kind="stable")[:k]
    return int(np.argmax(full)) in set(top.tolist())


def promotion_rates(lows: Sequence[Sequence[float]], fulls: Sequence[Sequence[float]], k: int, params: dict) -> dict:
    """Over several studies: how often promotion of the top ``k`` keeps the eventual best, by V and by HyperScore."""
    raw = [top_k_hits(lo, fu, k) for lo, fu in zip(lows, fulls)]
    hs = [top_k_hits(hyperscore(lo, **params), fu, k) for lo, fu in zip(lows, fulls)]
    return {"k": k, "studies": len(raw), "raw": sum(raw) / len(raw), "hyperscore": sum(hs) / len(hs)}
