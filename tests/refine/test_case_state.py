"""The per-case state of issue 17 on hand-made arrays: every feature's exact value, inputs left unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.refine.case_state import CASE_FEATURES, CLASS_FEATURES, case_state, class_state, state_vector


def _h(p):
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


@pytest.fixture
def case():
    seg = np.zeros((1, 4, 6), np.uint8)
    seg[0, 0, 0] = seg[0, 0, 1] = seg[0, 3, 5] = 1  # class 1: two components, 2 + 1 voxels
    seg[0, 2, 2] = 2
    probs = np.zeros((3, 1, 4, 6), np.float32)
    probs[1] = np.where(seg == 1, 0.9, 0.3)
    probs[2] = np.where(seg == 2, 0.7, 0.1)
    probs[0] = 1 - probs[1] - probs[2]
    return seg, probs, (2.0, 1.0, 1.0)  # voxel volume 2 mm^3 = 0.002 ml


def test_class_features_exactly(case):
    seg, probs, spacing = case
    s = class_state(seg, probs, 1, spacing)
    assert s["volume_ml"] == pytest.approx(0.006) and s["n_components"] == 2
    assert s["largest_fraction"] == pytest.approx(2 / 3) and s["second_ml"] == pytest.approx(0.002)
    # band: the 3 class voxels and their 5 in-plane face neighbours (the single slice has none above or below)
    assert s["band_p_mean"] == pytest.approx((3 * 0.9 + 5 * 0.3) / 8)
    assert s["band_entropy"] == pytest.approx((3 * _h(0.9) + 5 * _h(0.3)) / 8, rel=1e-6)
    assert s["uncertain_share"] == pytest.approx(21 / 3)  # the 21 voxels at p = 0.3, per class voxel
    assert s["dist_other_mm"] == pytest.approx(math.sqrt(5))  # (0, 0, 1) to (0, 2, 2)
    s2 = class_state(seg, probs, 2, spacing)
    assert s2["n_components"] == 1 and s2["largest_fraction"] == 1 and s2["second_ml"] == 0
    assert s2["dist_other_mm"] == pytest.approx(math.sqrt(5)) and s2["uncertain_share"] == 1.0  # its p = 0.7


def test_the_band_of_a_solid_cube():
    seg = np.zeros((5, 5, 5), np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    probs = np.stack([1 - seg, seg]).astype(np.float32)
    s = class_state(seg, probs, 1, (1, 1, 1))
    # dilation: 27 + 6 faces x 9 = 81 voxels; erosion: the centre; the band holds 80, 26 of them in the cube
    assert s["band_p_mean"] == pytest.approx(26 / 80) and s["band_entropy"] == pytest.approx(0, abs=1e-9)
    assert s["dist_other_mm"] == math.inf


def test_an_empty_class_and_the_case_features(case):
    seg, probs, spacing = case
    probs = np.concatenate([probs, np.zeros_like(probs[:1])])  # a class 3 that nnU-Net never predicts
    seg_before, probs_before = seg.copy(), probs.copy()
    st = case_state(seg, probs, (1, 2, 3), spacing)
    assert np.array_equal(seg, seg_before) and np.array_equal(probs, probs_before)  # a pure function
    assert st["log_voxels"] == pytest.approx(math.log(24)) and (st["spacing_0"], st["spacing_2"]) == (2.0, 1.0)
    assert {k: st[f"3.{k}"] for k in CLASS_FEATURES} == {**{k: 0.0 for k in CLASS_FEATURES},
                                                        "dist_other_mm": math.inf}
    v = state_vector(st, (1, 2, 3))
    assert v.shape == (len(CASE_FEATURES) + 3 * len(CLASS_FEATURES),) and np.isfinite(v).all()
    assert v[len(CASE_FEATURES)] == pytest.approx(math.log1p(0.006)) and v[-1] == 50.0  # the capped inf
