"""Statistics and surface metrics of the benchmark, on hand-made numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.benchmark.stats import bootstrap_ci, mean_sd, paired_test
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
