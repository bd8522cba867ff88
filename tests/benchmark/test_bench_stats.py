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


def test_paired_test_detects_a_consistent_gain_and_its_sign():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.9, size=40)
    cand = base + 0.02 + rng.normal(0, 0.005, size=40)
    r = paired_test(base, cand, n_boot=2000, seed=3)
    assert r.n == 40 and r.wins == 40 and r.losses == 0
    assert r.mean_diff == pytest.approx(0.02, abs=0.003)
    assert r.ci_low > 0 and r.ci_low < r.mean_diff < r.ci_high
    assert r.wilcoxon_p < 1e-6
    worse = paired_test(cand, base, n_boot=2000, seed=3)
    assert worse.mean_diff == pytest.approx(-r.mean_diff)
    assert worse.ci_high < 0 and worse.losses == 40


def test_paired_test_no_difference_is_not_significant_and_drops_nan_pairs():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.6, 0.9, size=60)
    cand = base + rng.normal(0, 0.01, size=60)
    cand[3] = math.nan
    r = paired_test(base, cand, n_boot=2000, seed=0)
    assert r.n == 59
    assert r.wilcoxon_p > 0.01
    assert r.ci_low < 0 < r.ci_high


def test_paired_test_identical_samples_and_length_mismatch():
    r = paired_test([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert r.ties == 3 and math.isnan(r.wilcoxon_p) and r.mean_diff == 0
    with pytest.raises(ValueError):
        paired_test([0.1, 0.2], [0.1])


def test_bootstrap_is_seeded_and_reproducible():
    d = np.linspace(-1, 2, 25)
    assert bootstrap_ci(d, n_boot=500, seed=7) == bootstrap_ci(d, n_boot=500, seed=7)
    assert bootstrap_ci(d, n_boot=500, seed=7) != bootstrap_ci(d, n_boot=500, seed=8)
    lo, hi = bootstrap_ci(d, n_boot=4000, seed=0)
    assert lo < d.mean() < hi


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
    assert 0 < nsd < 1
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
