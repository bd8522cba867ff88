"""Dice, HD95 and NSD against values worked out by hand on tiny arrays."""

import math

import numpy as np
import pytest
from scipy import ndimage

from hypera_nnunet.refine import metrics


def line(length: int, start: int, stop: int) -> np.ndarray:
    m = np.zeros((1, 1, length), dtype=bool)
    m[0, 0, start:stop] = True
    return m


def test_shifted_lines_with_anisotropic_spacing():
    # In a 1x1xN volume every voxel is a surface voxel (its y/z neighbours are outside the image).
    pred, ref = line(10, 2, 6), line(10, 3, 7)  # x = 2..5 and 3..6
    spacing = (1.0, 1.0, 2.0)  # 2 mm along x
    # P->R distances: x=2 -> 3 is 2 mm, the rest 0; R->P: x=6 -> 5 is 2 mm, the rest 0.
    # directed 95th percentile of [0, 0, 0, 2] = 0 + 0.85 * 2 = 1.7 (linear interpolation at 2.85)
    assert metrics.dice(pred, ref) == 0.75
    assert metrics.hd95(pred, ref, spacing) == pytest.approx(1.7)
    assert metrics.nsd(pred, ref, spacing, tolerance_mm=1.0) == 0.75  # 6 of 8 surface voxels within 1 mm
    assert metrics.nsd(pred, ref, spacing, tolerance_mm=2.0) == 1.0


def test_cube_surface_and_identity():
    cube = np.zeros((5, 5, 5), dtype=bool)
    cube[1:4, 1:4, 1:4] = True
    surf = metrics.surface(cube)
    assert surf.sum() == 26 and not surf[2, 2, 2]  # all but the centre
    s = metrics.surface_scores(cube, cube, (1.0, 1.0, 1.0))
    assert (metrics.dice(cube, cube), s.hd95, s.nsd) == (1.0, 0.0, 1.0)


def test_mask_touching_the_border_has_surface_there():
    full = np.ones((3, 3, 3), dtype=bool)
    assert metrics.surface(full).sum() == 26


def test_cube_shifted_by_one_voxel():
    a = np.zeros((5, 5, 6), dtype=bool)
    b = np.zeros((5, 5, 6), dtype=bool)
    a[1:4, 1:4, 1:4] = True
    b[1:4, 1:4, 2:5] = True
    # 18 shared voxels of 27 each: Dice 36/54. Surfaces: 26 voxels each (all but the centre). Of a's:
    # the 9 of its face x=1 are 1 mm from b's surface; its ring at x=2 (8) lies on b's face x=2 (0 mm); of its
    # face x=3, the 8 border voxels lie on b's surface and the centre (2,2,3) is b's centre, 1 mm away.
    # So 16 zeros and 10 ones each way (symmetric).
    assert metrics.dice(a, b) == pytest.approx(36 / 54)
    s = metrics.surface_scores(a, b, (1.0, 1.0, 1.0), tolerance_mm=0.5)
    assert s.nsd == pytest.approx(32 / 52)
    assert s.hd95 == 1.0  # 95th percentile of 16 zeros and 10 ones
    assert metrics.nsd(a, b, (1.0, 1.0, 1.0), tolerance_mm=1.0) == 1.0


def test_empty_masks():
    empty = np.zeros((3, 3, 3), dtype=bool)
    one = empty.copy()
    one[1, 1, 1] = True
    assert math.isnan(metrics.dice(empty, empty))
    both = metrics.surface_scores(empty, empty, (1, 1, 1))
    assert math.isnan(both.hd95) and math.isnan(both.nsd)
    only = metrics.surface_scores(one, empty, (1, 1, 1))
    assert metrics.dice(one, empty) == 0.0 and math.isnan(only.hd95) and only.nsd == 0.0


def test_bounding_box_distances_equal_full_volume():
    rng = np.random.default_rng(3)
    for _ in range(5):
        p = ndimage.gaussian_filter(rng.normal(size=(20, 24, 18)), 2) > 0.05
        r = ndimage.gaussian_filter(rng.normal(size=(20, 24, 18)), 2) > 0.05
        sp, sr = metrics.surface(p), metrics.surface(r)
        spacing = (1.5, 0.8, 1.0)
        full = ndimage.distance_transform_edt(~sr, sampling=spacing)[sp]
        np.testing.assert_array_equal(metrics.directed_distances(sp, sr, spacing), full)


def test_class_metrics_and_nanmean():
    seg = np.zeros((1, 1, 6), dtype=np.uint8)
    ref = np.zeros((1, 1, 6), dtype=np.uint8)
    seg[0, 0, :3] = 1
    ref[0, 0, :3] = 1
    ref[0, 0, 4] = 2
    m = metrics.class_metrics(seg, ref, [1, 2], (1, 1, 1))
    assert m[1] == {"Dice": 1.0, "HD95": 0.0, "NSD": 1.0}
    assert m[2]["Dice"] == 0.0 and m[2]["NSD"] == 0.0 and math.isnan(m[2]["HD95"])
    assert metrics.nanmean([1.0, math.nan, 0.0]) == 0.5
    assert math.isnan(metrics.nanmean([math.nan]))


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        metrics.surface_scores(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool), (1, 1, 1))
