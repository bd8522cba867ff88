"""Statistics and surface metrics of the benchmark, on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.benchmark.stats import (
    bootstrap_ci,
    mean_sd,
    min_detectable_difference,
    paired_t_test,
    paired_test,
    power_table,
    sign_flip_test,
    t_test_power,
)
from hypera_nnunet.benchmark.surface import surface, surface_metrics


def test_mean_sd_uses_sample_sd_and_drops_nan():
    m = mean_sd([0.8, 0.9, math.nan, 1.0])
    assert m.n == 3
    assert m.mean == pytest.approx(0.9)
    assert m.sd == pytest.approx(0.1)
    assert mean_sd([]).n == 0
    assert math.isnan(mean_sd([0.5]).sd)


def test_paired_test_on_hand_made_differences():
    # differences -1, 2, 3, -4, 5, 6: signed ranks give T+ = 2+3+5+6 = 16, T- = 1+4 = 5; of the 2^6 = 64 sign
    # patterns, 10 have T- <= 5 (the subsets of {1..6} summing to at most 5), so the exact two-sided p is 20/64
    base = [0.5] * 6
    r = paired_test(base, [0.5 + d for d in (-1, 2, 3, -4, 5, 6)], n_boot=2000, seed=0)
    assert (r.n, r.wins, r.losses, r.ties) == (6, 4, 2, 0)
    assert r.mean_diff == pytest.approx(11 / 6) and r.median_diff == pytest.approx(2.5)
    assert r.wilcoxon_stat == 5.0 and r.wilcoxon_p == pytest.approx(20 / 64)
    assert (r.ci_low, r.ci_high) == pytest.approx((-5 / 6, 26 / 6))  # seed 0, 2000 resamples (means are k/6)
    worse = paired_test([0.5 + d for d in (-1, 2, 3, -4, 5, 6)], base, n_boot=2000, seed=0)
    assert worse.mean_diff == pytest.approx(-11 / 6) and (worse.wins, worse.losses) == (2, 4)
    assert worse.wilcoxon_p == pytest.approx(20 / 64)
    # all five positive: T- = 0, the most extreme pattern on either side, p = 2 / 2^5
    up = paired_test([0.0] * 5, [1, 2, 3, 4, 5], n_boot=2000, seed=0)
    assert up.wilcoxon_stat == 0.0 and up.wilcoxon_p == pytest.approx(2 / 32) and up.mean_diff == 3.0


def test_paired_test_drops_nan_pairs_and_zero_differences():
    r = paired_test([0.1, 0.2, 0.3, math.nan], [0.1, 1.2, 2.3, 0.5], n_boot=500, seed=0)
    # the NaN pair is dropped; the zero difference is a tie, left out of the Wilcoxon test (n = 2 non-zero: p = 2/4)
    assert (r.n, r.wins, r.losses, r.ties) == (3, 2, 0, 1)
    assert r.mean_diff == pytest.approx(1.0) and r.wilcoxon_p == pytest.approx(0.5)


def test_paired_test_identical_samples_and_length_mismatch():
    r = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert r.ties == 3 and math.isnan(r.wilcoxon_p) and r.mean_diff == 0
    assert (r.ci_low, r.ci_high) == (0.0, 0.0)
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1])


def test_bootstrap_is_seeded_and_exact_on_hand_made_differences():
    d = np.linspace(-1, 2, 25)
    assert bootstrap_ci(d, n_boot=500, seed=7) == bootstrap_ci(d, n_boot=500, seed=7)
    assert bootstrap_ci(d, n_boot=500, seed=7) != bootstrap_ci(d, n_boot=500, seed=8)
    # a constant difference has one possible resample mean
    assert bootstrap_ci([0.25] * 4, n_boot=100, seed=3) == (0.25, 0.25)
    # from {0, 1} a two-draw mean is 0, 0.5 or 1 (1/4, 1/2, 1/4): the 2.5% and 97.5% quantiles are 0 and 1
    assert bootstrap_ci([0.0, 1.0], n_boot=10000, seed=0) == (0.0, 1.0)
    assert all(math.isnan(x) for x in bootstrap_ci([], n_boot=10))


def _cube(shape, lo, hi):
    m = np.zeros(shape, dtype=bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def test_surface_is_the_boundary_shell():
    m = _cube((10, 10, 10), (2, 2, 2), (7, 7, 7))  # 5^3 cube: 125 voxels, 27 interior
    assert surface(m).sum() == 125 - 27


def test_surface_metrics_identical_shifted_and_empty():
    ref = _cube((20, 20, 20), (5, 5, 5), (15, 15, 15))
    hd, nsd = surface_metrics(ref, ref, (1.0, 1.0, 1.0), 1.0)
    assert hd == 0.0 and nsd == 1.0
    shifted = np.roll(ref, 3, axis=0)
    hd, nsd = surface_metrics(shifted, ref, (1.0, 1.0, 1.0), 1.0)
    assert hd == pytest.approx(3.0)
    # each 10^3 cube has 488 surface voxels. Of the shifted cube's, within 1 mm of the reference's surface: its
    # bottom face's outer two rings (36 + 28), its side rings on the 7 slices that overlap the reference's surface
    # band or lie 1 mm above it (7 x 36); not its top face (3 mm away). 316 of 488, the same from the other side.
    assert nsd == pytest.approx(316 / 488)
    # spacing scales distances: 2 mm along the shifted axis doubles HD95
    hd2, _ = surface_metrics(shifted, ref, (2.0, 1.0, 1.0), 1.0)
    assert hd2 == pytest.approx(6.0)
    # a tolerance beyond the shift counts every surface voxel
    assert surface_metrics(shifted, ref, (1.0, 1.0, 1.0), 3.0)[1] == pytest.approx(1.0)
    empty = np.zeros_like(ref)
    hd, nsd = surface_metrics(empty, ref, (1.0, 1.0, 1.0))
    assert math.isnan(hd) and nsd == 0.0
    hd, nsd = surface_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert math.isnan(hd) and math.isnan(nsd)


def test_sign_flip_test_exact_on_hand_made_differences():
    # five positive differences: only the all-plus and all-minus sign vectors reach |sum| = 15: 2 of 32
    assert sign_flip_test([1, 2, 3, 4, 5]) == (pytest.approx(2 / 32), True)
    assert sign_flip_test([0.1] * 5) == (pytest.approx(2 / 32), True)  # equal sums up to rounding are ties
    # [2, 2, -1]: observed |sum| 3; the 8 sums of ±2 ±2 ±1 are ±5, ±3, ±1, ±1: 4 reach 3 (a tie at 3 counts)
    assert sign_flip_test([2, 2, -1]) == (pytest.approx(4 / 8), True)
    # [1, 1, 2]: sums ±4, ±2, ±2, 0, 0: 2 of 8 reach 4
    assert sign_flip_test([1, 1, 2])[0] == pytest.approx(2 / 8)
    # a zero difference flips to itself: [1, 0] gives sums 1, 1, -1, -1, all reaching 1
    assert sign_flip_test([1, 0])[0] == 1.0 and sign_flip_test([0, 0, 0])[0] == 1.0
    assert math.isnan(sign_flip_test([])[0])
    # the same differences with their sign flipped: the two-sided p is the same
    assert sign_flip_test([-2, -2, 1])[0] == pytest.approx(0.5)


def test_sign_flip_test_monte_carlo_above_16_pairs_is_seeded():
    # 20 equal differences: only 2 of 2^20 sign vectors reach |sum| = 20, so 10,000 draws of seed 0 find none
    # and p = (1 + 0) / (1 + 10000)
    assert sign_flip_test([1.0] * 20, n_draws=10_000, seed=0) == (pytest.approx(1 / 10_001), False)
    d = np.linspace(-0.5, 1.0, 17)
    exact, _ = sign_flip_test(d, exact_max_n=17)
    mc, is_exact = sign_flip_test(d, n_draws=100_000, seed=3)
    assert not is_exact and mc == sign_flip_test(d, n_draws=100_000, seed=3)[0]
    assert mc == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 100_000))


def test_paired_t_test_against_a_hand_computation():
    # [1..5]: mean 3, sd sqrt(2.5), t = 3 / (sqrt(2.5) / sqrt(5)) = 3 sqrt(2), df 4; Student's t with 4 degrees
    # of freedom has the closed-form CDF F(t) = 1/2 + (3/4) u (1 - u^2 / 3), u = t / sqrt(4 + t^2)
    t, p = paired_t_test([1, 2, 3, 4, 5])
    assert t == pytest.approx(3 * math.sqrt(2))
    u = t / math.sqrt(4 + t * t)
    assert p == pytest.approx(2 * (1 - (0.5 + 0.75 * u * (1 - u * u / 3))), rel=1e-12)
    assert p == pytest.approx(0.0132356, abs=1e-7) and p < 0.05  # where sign-flip and Wilcoxon stop at 0.0625
    assert all(math.isnan(x) for x in paired_t_test([0.3, 0.3, 0.3]))
    assert all(math.isnan(x) for x in paired_t_test([0.3]))


def test_power_table_smallest_detectable_difference():
    from scipy.stats import nct
    from scipy.stats import t as t_dist

    # G*Power's classic: a one-sample / paired t-test needs 34 pairs for effect size 0.5 (alpha 0.05, power 0.8)
    assert min_detectable_difference(1.0, 34) < 0.5 < min_detectable_difference(1.0, 33)
    # the figure: at sd 0.29, a 0.05 difference takes about 267 runs
    assert min_detectable_difference(0.29, 267) == pytest.approx(0.05, abs=2e-4)
    # each entry solves the power equation, checked with scipy's noncentral t directly
    table = power_table(0.29)
    assert list(table) == [5, 10, 15]
    for n, delta in table.items():
        crit = t_dist.ppf(0.975, n - 1)
        nc = delta / 0.29 * math.sqrt(n)
        assert nct.sf(crit, n - 1, nc) + nct.cdf(-crit, n - 1, nc) == pytest.approx(0.8, abs=1e-9)
    assert table[5] == pytest.approx(0.29 * 1.681997, abs=1e-6)  # effect size 1.682 with 5 pairs
    assert table[15] == pytest.approx(0.29 * 0.778023, abs=1e-6)
    assert min_detectable_difference(0.58, 10) == pytest.approx(2 * table[10])  # linear in sd
    assert t_test_power(0.0, 10) == pytest.approx(0.05)  # no effect: power = alpha
    assert math.isnan(min_detectable_difference(math.nan, 5)) and math.isnan(min_detectable_difference(1.0, 1))


def test_paired_test_carries_sign_flip_and_t_test():
    r = paired_test([0.0] * 5, [1, 2, 3, 4, 5], n_boot=200, seed=0)
    assert r.sign_flip_p == pytest.approx(2 / 32) and r.sign_flip_exact
    assert r.t_stat == pytest.approx(3 * math.sqrt(2)) and r.t_p == pytest.approx(0.0132356, abs=1e-7)
    assert r.sd_diff == pytest.approx(math.sqrt(2.5))
    assert r.wilcoxon_p == pytest.approx(2 / 32)  # Wilcoxon's floor at n = 5
