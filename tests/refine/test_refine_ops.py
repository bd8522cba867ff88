"""Every refiner: exact output on tiny hand-made arrays, and no mutation of its inputs (read-only arrays)."""

import numpy as np
import pytest
from refine_testdata import ro

from hypera_nnunet.refine import ops


def row(values, dtype=np.uint8) -> np.ndarray:
    return np.asarray(values, dtype=dtype).reshape(1, 1, -1)


def probs3(p0, p1, p2) -> np.ndarray:
    return np.stack([row(p0, np.float32), row(p1, np.float32), row(p2, np.float32)])


def probs2(p1) -> np.ndarray:
    p1 = row(p1, np.float32)
    return np.stack([1 - p1, p1])


# idx:         0     1     2     3     4
P3 = probs3([0.55, 0.30, 0.40, 0.70, 0.10],
            [0.40, 0.65, 0.45, 0.10, 0.20],
            [0.05, 0.05, 0.15, 0.20, 0.70])
SEG3 = row([0, 1, 1, 0, 2])  # the argmax of P3


def test_threshold_class():
    seg, p = ro(SEG3), ro(P3)
    assert (ops.threshold_class(seg, p, label=1, threshold=0.35) == row([1, 1, 1, 0, 2])).all()
    # removal: voxel 2 has p1 = 0.45 < 0.6 and goes to its most probable other label, background (0.40 > 0.15)
    assert (ops.threshold_class(seg, p, label=1, threshold=0.6) == row([0, 1, 0, 0, 2])).all()
    # voxel 3: p2 = 0.20 >= 0.15 and label 2 is its top foreground class (0.20 > 0.10)
    assert (ops.threshold_class(seg, p, label=2, threshold=0.15) == row([0, 1, 1, 2, 2])).all()
    out = ops.threshold_class(seg, p, label=1, threshold=0.5)
    assert (out == seg).all() and out is not seg


def test_grow_from_seeds():
    p = ro(probs2([0.30, 0.95, 0.70, 0.35, 0.25, 0.40, 0.10]))
    seg = ro(row([0, 1, 1, 0, 0, 0, 0]))
    # seed: voxel 1; candidates p >= 0.3: voxels 0, 3 (connected through the class) and 5 (cut off by voxel 4)
    out = ops.grow_from_seeds(seg, p, label=1, seed_threshold=0.9, grow_threshold=0.3)
    assert (out == row([1, 1, 1, 1, 0, 0, 0])).all()
    assert (ops.grow_from_seeds(seg, p, label=1, seed_threshold=0.99, grow_threshold=0.3) == seg).all()


def test_shift_fg_prior():
    p = ro(probs2([0.20, 0.45, 0.55, 0.80, 0.30]))
    seg = ro(row([0, 0, 1, 1, 0]))
    # log prior log(1.5): label iff 1.5 p1 > p0
    assert (ops.shift_fg_prior(seg, p, label=1, log_prior=np.log(1.5)) == row([0, 1, 1, 1, 0])).all()
    # log prior -log(1.5): label iff p1 / 1.5 > p0; voxel 2 (0.367 < 0.45) leaves to background
    assert (ops.shift_fg_prior(seg, p, label=1, log_prior=-np.log(1.5)) == row([0, 0, 0, 1, 0])).all()
    # expected volume sum p1 = 2.3; x1.2 = 2.76 -> 3 voxels with the highest p1/p0: 3, 2, 1
    assert (ops.shift_fg_prior(seg, p, label=1, volume_ratio=1.2) == row([0, 1, 1, 1, 0])).all()
    assert (ops.shift_fg_prior(seg, p, label=1, volume_ratio=0.4) == row([0, 0, 0, 1, 0])).all()  # 0.92 -> 1
    assert (ops.shift_fg_prior(seg, p, label=1) == seg).all()


def test_shift_fg_prior_flips_only_between_class_and_background():
    out = ops.shift_fg_prior(ro(SEG3), ro(P3), label=1, log_prior=1.5)
    assert out[0, 0, 4] == 2  # label 2 is never touched
    assert (out == row([1, 1, 1, 0, 2])).all()  # voxel 3 stays background: label 2 is its top foreground


def test_refine_boundary_level_and_band():
    p = ro(probs2([0.10, 0.30, 0.45, 0.60, 0.90, 0.90, 0.90]))
    seg = ro(row([0, 0, 0, 1, 1, 1, 1]))
    # band 1 around the border: voxels 2..6 (a 1-voxel-thin volume has no interior); r = p1
    assert (ops.refine_boundary(seg, p, label=1, level=0.4, band=1) == row([0, 0, 1, 1, 1, 1, 1])).all()
    assert (ops.refine_boundary(seg, p, label=1, level=0.65, band=1) == row([0, 0, 0, 0, 1, 1, 1])).all()
    assert (ops.refine_boundary(seg, p, label=1, level=0.25, band=1) == row([0, 0, 1, 1, 1, 1, 1])).all()
    assert (ops.refine_boundary(seg, p, label=1, level=0.25, band=2) == row([0, 1, 1, 1, 1, 1, 1])).all()
    assert (ops.refine_boundary(seg, p, label=1) == seg).all()


def test_refine_boundary_smoothing_removes_an_isolated_spike():
    p = ro(probs2([0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]))
    seg = ro(row([0, 0, 0, 1, 0, 0, 0]))
    # smoothed with sigma 2 mm the spike is ~0.2 against ~0.8 background
    assert (ops.refine_boundary(seg, p, label=1, sigma_mm=2.0, spacing=(1, 1, 1)) == 0).all()


def test_refine_boundary_moves_the_border_between_two_classes():
    p = ro(probs3([0.0, 0.0, 0.0, 0.0], [0.9, 0.6, 0.4, 0.1], [0.1, 0.4, 0.6, 0.9]))
    seg = ro(row([1, 2, 2, 2]))
    # level 0.35 for label 1: voxel 1 (r = 0.6) and voxel 2 (r = 0.4) join; voxel 3 (0.1) is outside the band
    assert (ops.refine_boundary(seg, p, label=1, level=0.35, band=2) == row([1, 1, 1, 2])).all()


def hollow_cube(shape=(5, 5, 5), centre=0) -> np.ndarray:
    seg = np.zeros(shape, dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[2, 2, 2] = centre
    return seg


def test_fill_holes_fills_background_only():
    out = ops.fill_holes(ro(hollow_cube()), label=1)
    assert (out == hollow_cube(centre=1)).all()
    other = hollow_cube(centre=2)
    assert (ops.fill_holes(ro(other), label=1) == other).all()


def test_closing_bridges_a_one_voxel_gap():
    seg = np.zeros((5, 5, 9), dtype=np.uint8)
    seg[1:4, 1:4, 0:3] = 1
    seg[1:4, 1:4, 4:7] = 1
    out = ops.open_close(ro(seg), label=1, close_radius=1)
    expected = seg.copy()
    expected[2, 2, 3] = 1  # only the centre of the gap: its 6 neighbours are all in the dilated mask
    assert (out == expected).all()


def test_opening_a_cube_leaves_the_cross():
    seg = np.zeros((5, 5, 6), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[1, 1, 4] = 1  # a spur off the corner (1, 1, 3)
    seg[0, 0, 0] = 2  # another label is left alone
    out = ops.open_close(ro(seg), label=1, open_radius=1)
    expected = np.zeros_like(seg)
    for z, y, x in [(2, 2, 2), (1, 2, 2), (3, 2, 2), (2, 1, 2), (2, 3, 2), (2, 2, 1), (2, 2, 3)]:
        expected[z, y, x] = 1
    expected[0, 0, 0] = 2
    assert (out == expected).all()


def test_ball():
    assert ops.ball(1).sum() == 7 and ops.ball(2).sum() == 33


def test_enforce_compactness():
    seg = np.zeros((5, 5, 7), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[2, 2, 4] = 1  # 9 + 1 neighbours of the label
    seg[2, 2, 5] = 1  # 1 neighbour: a spur tip
    expected = seg.copy()
    expected[2, 2, 5] = 0
    assert (ops.enforce_compactness(ro(seg), label=1, min_neighbors=2) == expected).all()
    # a background voxel with all 26 neighbours in the label joins it (26 > 26 - 1)
    assert (ops.enforce_compactness(ro(hollow_cube()), label=1, min_neighbors=1) == hollow_cube(centre=1)).all()
    assert (ops.enforce_compactness(ro(seg), label=1, min_neighbors=0) == seg).all()


def test_filter_components():
    seg = ro(row([1, 1, 1, 0, 1, 0, 1, 1, 0]))  # components of size 3, 1, 2
    assert (ops.filter_components(seg, label=1, min_size_voxels=2) == row([1, 1, 1, 0, 0, 0, 1, 1, 0])).all()
    assert (ops.filter_components(seg, label=1, keep_largest=True) == row([1, 1, 1, 0, 0, 0, 0, 0, 0])).all()
    # the largest component is never removed, however large min_size is
    assert (ops.filter_components(seg, label=1, min_size_voxels=10) == row([1, 1, 1, 0, 0, 0, 0, 0, 0])).all()
    tie = ro(row([1, 1, 0, 1, 1]))
    assert (ops.filter_components(tie, label=1, keep_largest=True) == tie).all()


def test_filter_components_connectivity():
    seg = np.zeros((1, 3, 3), dtype=np.uint8)
    seg[0, 0, 0] = seg[0, 1, 1] = seg[0, 1, 2] = 1  # a diagonal contact
    expected_faces = seg.copy()
    expected_faces[0, 0, 0] = 0
    assert (ops.filter_components(ro(seg), label=1, keep_largest=True, connectivity=1) == expected_faces).all()
    assert (ops.filter_components(ro(seg), label=1, keep_largest=True, connectivity=2) == seg).all()


@pytest.mark.parametrize("fn, kwargs", [
    (ops.threshold_class, {"threshold": 0.3}), (ops.threshold_class, {"threshold": 0.7}),
    (ops.grow_from_seeds, {"seed_threshold": 0.6, "grow_threshold": 0.2}),
    (ops.shift_fg_prior, {"log_prior": 0.7}), (ops.shift_fg_prior, {"volume_ratio": 1.1}),
    (ops.refine_boundary, {"sigma_mm": 1.0, "level": 0.4, "band": 2}),
    (ops.fill_holes, {}), (ops.open_close, {"open_radius": 1, "close_radius": 2}),
    (ops.enforce_compactness, {"min_neighbors": 5}),
    (ops.filter_components, {"min_size_voxels": 5, "keep_largest": True}),
])
def test_pure_on_random_volumes(fn, kwargs):
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(3, 9, 10, 8)).astype(np.float32)
    p = np.exp(logits) / np.exp(logits).sum(axis=0)
    seg = np.argmax(p, axis=0).astype(np.uint8)
    seg_ro, p_ro = ro(seg), ro(p)
    out1 = fn(seg_ro, p_ro, label=1, **kwargs)
    out2 = fn(seg_ro, p_ro, label=1, **kwargs)
    assert out1 is not seg_ro and (out1 == out2).all()
    assert (seg_ro == seg).all() and (p_ro == p).all()
    assert set(np.unique(out1)) <= {0, 1, 2}


def test_bad_arguments():
    with pytest.raises(ValueError, match="foreground"):
        ops.fill_holes(row([0, 1]), label=0)
    with pytest.raises(ValueError, match="do not match"):
        ops.threshold_class(row([0, 1]), probs2([0.1, 0.2, 0.3]), label=1, threshold=0.3)
