"""Paired statistics: mean ± sd over folds, Wilcoxon signed-rank over cases, seeded bootstrap CI."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MeanSD:
    mean: float
    sd: float
    n: int

    def fmt(self, digits: int = 4) -> str:
        if self.n == 0:
            return "n/a"
        sd = "" if self.n < 2 else f" ± {self.sd:.{digits}f}"
        return f"{self.mean:.{digits}f}{sd}"


def mean_sd(values) -> MeanSD:
    """Mean and sample standard deviation (ddof=1) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if v.size == 0:
        return MeanSD(math.nan, math.nan, 0)
    return MeanSD(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size))


@dataclass(frozen=True)
class PairedTest:
    """``candidate - baseline`` over matched pairs."""

    n: int
    mean_diff: float
    median_diff: float
    ci_low: float
    ci_high: float
    wilcoxon_stat: float
    wilcoxon_p: float
    wins: int
    losses: int
    ties: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(self).items()}


def bootstrap_ci(diffs, n_boot: int = 10000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``diffs`` (resampling pairs with a seeded generator)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(1, d.size))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, d.size, size=(stop - start, d.size))
        means[start:stop] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def paired_test(baseline, candidate, n_boot: int = 10000, seed: int = 0, tie_tol: float = 0.0) -> PairedTest:
    """Paired comparison; pairs where either value is NaN are dropped.

    Wilcoxon signed-rank (two-sided, ``scipy.stats.wilcoxon`` default zero handling) over the differences;
    p is NaN when fewer than two non-zero differences exist.
    """
    from scipy.stats import wilcoxon

    b = np.asarray(baseline, dtype=float)
    c = np.asarray(candidate, dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"paired samples differ in length: {b.shape} vs {c.shape}")
    keep = np.isfinite(b) & np.isfinite(c)
    d = c[keep] - b[keep]
    if d.size == 0:
        return PairedTest(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, 0, 0)
    nonzero = np.abs(d) > tie_tol
    if nonzero.sum() >= 2:
        res = wilcoxon(d)
        stat, p = float(res.statistic), float(res.pvalue)
    else:
        stat, p = math.nan, math.nan
    lo, hi = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    return PairedTest(n=int(d.size), mean_diff=float(d.mean()), median_diff=float(np.median(d)), ci_low=lo, ci_high=hi,
                      wilcoxon_stat=stat, wilcoxon_p=p, wins=int((d > tie_tol).sum()), losses=int((d < -tie_tol).sum()),
                      ties=int((~nonzero).sum()))
