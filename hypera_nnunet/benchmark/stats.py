"""Paired statistics: mean ± sd, the sign-flip permutation test, the paired t-test, Wilcoxon, a seeded bootstrap
CI, and the smallest difference a paired t-test detects at a given sd (the power table).

Which test leads: over training runs (one paired difference per (seed, fold)), the **sign-flip permutation
test** is primary. Under the null hypothesis that the two trainers are exchangeable within a pair, each
difference is as likely to have either sign, so the two-sided p is the share of the 2^n sign vectors whose
``|sum of signed differences|`` reaches the observed ``|sum|`` (ties count as reaching it). It is exact for
n <= :data:`EXACT_MAX_N` (every sign vector enumerated) and a seeded Monte Carlo estimate above,
``(1 + hits) / (1 + draws)``. With 5 pairs its smallest p is 2/32 = 0.0625 and the t-test's can be far lower; the
Wilcoxon signed-rank test's smallest two-sided p with n pairs is 2/2^n as well (0.0625 at n = 5), so neither
rank test can reach p < 0.05 with 5 pairs, however large the difference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: sign-flip test: enumerate all 2^n sign vectors up to this n, Monte Carlo above
EXACT_MAX_N = 16
#: Monte Carlo sign vectors drawn above EXACT_MAX_N
SIGN_FLIP_DRAWS = 100_000
#: the numbers of pairs of the power table
POWER_TABLE_N = (5, 10, 15)


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
    sd_diff: float = math.nan
    sign_flip_p: float = math.nan
    sign_flip_exact: bool = True
    t_stat: float = math.nan
    t_p: float = math.nan

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


def sign_flip_test(diffs, n_draws: int = SIGN_FLIP_DRAWS, seed: int = 0,
                   exact_max_n: int = EXACT_MAX_N) -> tuple[float, bool]:
    """Two-sided paired sign-flip permutation test of mean difference 0: ``(p, exact)``.

    p = share of sign vectors s with ``|sum(s * d)| >= |sum(d)|`` (a relative tolerance of 1e-9 of ``sum|d|``
    absorbs rounding, so equal sums are ties). All 2^n vectors for n <= ``exact_max_n`` (``exact`` True), else
    ``n_draws`` vectors from ``np.random.default_rng(seed)`` and p = (1 + hits) / (1 + n_draws). NaN for no
    differences; 1.0 when every difference is 0.
    """
    d = np.asarray(diffs, dtype=float)
    n = d.size
    if n == 0:
        return math.nan, True
    observed = abs(float(d.sum()))
    tol = 1e-9 * float(np.abs(d).sum())
    if n <= exact_max_n:
        hits = 0
        block = 1 << min(n, 16)  # sign vectors per block: at most 65536 x n values in memory
        bits = np.arange(n)
        for start in range(0, 1 << n, block):
            codes = np.arange(start, start + block, dtype=np.int64)[:, None]
            signs = 1.0 - 2.0 * ((codes >> bits) & 1)
            hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
        return hits / float(1 << n), True
    rng = np.random.default_rng(seed)
    hits, left = 0, n_draws
    chunk = max(1, 2_000_000 // n)
    while left:
        m = min(chunk, left)
        signs = rng.integers(0, 2, size=(m, n)) * 2.0 - 1.0
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
        left -= m
    return (1 + hits) / (1 + n_draws), False


def paired_t_test(diffs) -> tuple[float, float]:
    """Two-sided one-sample t-test of the mean difference against 0: ``(t, p)`` with n - 1 degrees of freedom,
    t = mean / (sd / sqrt(n)) (sample sd, ddof 1). NaN for fewer than 2 differences or when all are equal (an sd
    below 1e-9 of the largest difference counts as rounding, not spread)."""
    from scipy.stats import t as t_dist

    d = np.asarray(diffs, dtype=float)
    if d.size < 2:
        return math.nan, math.nan
    sd = float(d.std(ddof=1))
    if sd <= 1e-9 * float(np.abs(d).max()):  # equal differences, up to rounding: no spread to test against
        return math.nan, math.nan
    t = float(d.mean()) / (sd / math.sqrt(d.size))
    return t, float(2.0 * t_dist.sf(abs(t), d.size - 1))


def t_test_power(effect: float, n: int, alpha: float = 0.05) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs for a true mean difference of ``effect`` standard
    deviations of the paired differences: P(|T| > t_crit) with T ~ noncentral t(n - 1, effect * sqrt(n))."""
    from scipy.stats import nct
    from scipy.stats import t as t_dist

    df = n - 1
    crit = float(t_dist.ppf(1 - alpha / 2, df))
    nc = effect * math.sqrt(n)
    lower = float(nct.cdf(-crit, df, nc))  # the far tail; scipy can give NaN for it at a large nc, where it is ~0
    return float(nct.sf(crit, df, nc)) + (lower if math.isfinite(lower) else 0.0)


def min_detectable_difference(sd: float, n: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true mean difference that the two-sided paired t-test detects with probability ``power``
    at level ``alpha`` with ``n`` pairs whose differences have standard deviation ``sd``: ``sd * e`` with ``e``
    solving :func:`t_test_power` (e, n, alpha) = power. NaN for n < 2 or an sd that is not finite."""
    from scipy.optimize import brentq

    if n < 2 or not math.isfinite(sd) or sd < 0:
        return math.nan
    hi = 1.0
    while t_test_power(hi, n, alpha) < power:
        hi *= 2.0
    e = brentq(lambda x: t_test_power(x, n, alpha) - power, 0.0, hi, xtol=1e-12, rtol=1e-12)
    return sd * e


def power_table(sd: float, ns=POWER_TABLE_N, alpha: float = 0.05, power: float = 0.8) -> dict[int, float]:
    """``{n: smallest detectable difference}`` at the measured ``sd`` of paired differences."""
    return {int(n): min_detectable_difference(sd, int(n), alpha, power) for n in ns}


def paired_test(baseline, candidate, n_boot: int = 10000, seed: int = 0, tie_tol: float = 0.0) -> PairedTest:
    """Paired comparison; pairs where either value is NaN are dropped.

    Wilcoxon signed-rank (two-sided, ``scipy.stats.wilcoxon`` default zero handling) over the differences;
    p is NaN when fewer than two non-zero differences exist. The sign-flip test (:func:`sign_flip_test`, seeded
    with ``seed``) and the paired t-test (:func:`paired_t_test`) over the same differences.
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
    sf_p, exact = sign_flip_test(d, seed=seed)
    t, t_p = paired_t_test(d)
    return PairedTest(n=int(d.size), mean_diff=float(d.mean()), median_diff=float(np.median(d)), ci_low=lo, ci_high=hi,
                      wilcoxon_stat=stat, wilcoxon_p=p, wins=int((d > tie_tol).sum()), losses=int((d < -tie_tol).sum()),
                      ties=int((~nonzero).sum()), sd_diff=float(d.std(ddof=1)) if d.size > 1 else math.nan,
                      sign_flip_p=sf_p, sign_flip_exact=exact, t_stat=t, t_p=t_p)
