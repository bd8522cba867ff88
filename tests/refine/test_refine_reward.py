"""The multi-objective reward and the adaptive weight manager, on hand-made masks."""

import math

import numpy as np
import pytest

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine.reward import (
    TERMS,
    AdaptiveWeightManager,
    Reference,
    RewardWeights,
    combine,
    face_area_and_volume,
    reward_terms,
    sphericity,
)


def line(length, start, stop):
    m = np.zeros((1, 1, length), dtype=bool)
    m[0, 0, start:stop] = True
    return m


def test_face_area_volume_and_sphericity():
    one = np.zeros((3, 3, 3), dtype=bool)
    one[1, 1, 1] = True
    assert face_area_and_volume(one, (1, 1, 1)) == (6.0, 1.0)
    assert face_area_and_volume(one, (2, 1, 1)) == (2 * 1 + 4 * 2, 2.0)  # two 1x1 faces, four 2x1 faces
    assert sphericity(one, (1, 1, 1)) == pytest.approx(math.pi ** (1 / 3) * 6 ** (2 / 3) / 6)
    full = np.ones((2, 2, 2), dtype=bool)  # touches the border: those faces count too
    assert face_area_and_volume(full, (1, 1, 1)) == (24.0, 8.0)
    assert sphericity(np.zeros((2, 2, 2), bool), (1, 1, 1)) == 0.0


def test_reward_terms_exact():
    pred, ref = line(10, 2, 6), line(10, 3, 7)  # 4 voxels each, 3 shared; see test_refine_metrics
    w = RewardWeights(hd95_scale_mm=10.0, nsd_tolerance_mm=1.0)
    t = reward_terms(pred, Reference.from_mask(ref, (1, 1, 2)), (1, 1, 2), w)
    assert t["dice"] == 0.75 and t["nsd"] == 0.75
    assert t["hd95"] == pytest.approx(1 - 1.7 / 10)
    assert t["pr_balance"] == 1.0  # precision = recall = 3/4
    assert t["fg_balance"] == 1.0 and t["compactness"] == 1.0  # same volume and shape
    bigger = line(10, 2, 8)  # 6 voxels, 4 shared with ref (3..6): precision 4/6, recall 1
    t = reward_terms(bigger, Reference.from_mask(ref, (1, 1, 1)), (1, 1, 1), w)
    assert t["pr_balance"] == pytest.approx(1 - (1 - 4 / 6))
    assert t["fg_balance"] == pytest.approx(1 - 2 / 4)


def test_reward_terms_empty_masks():
    empty = np.zeros((1, 1, 5), dtype=bool)
    w = RewardWeights()
    assert reward_terms(empty, Reference.from_mask(empty, (1, 1, 1)), (1, 1, 1), w) == dict.fromkeys(TERMS, 1.0)
    t = reward_terms(empty, Reference.from_mask(line(5, 1, 3), (1, 1, 1)), (1, 1, 1), w)
    assert t["dice"] == t["nsd"] == t["hd95"] == t["pr_balance"] == t["fg_balance"] == 0.0


def test_combine_is_the_weighted_mean():
    terms = {"dice": 1.0, "nsd": 0.5, "hd95": 0.0, "pr_balance": 1.0, "compactness": 1.0, "fg_balance": 1.0}
    w = {"dice": 2.0, "nsd": 2.0, "hd95": 0.0, "pr_balance": 0.0, "compactness": 0.0, "fg_balance": 0.0}
    assert combine(terms, w) == 0.75


def test_weights_are_checked():
    with pytest.raises(ConfigError):
        RewardWeights(dice=-1.0)
    with pytest.raises(ConfigError):
        RewardWeights(dice=0, nsd=0, hd95=0, pr_balance=0, compactness=0, fg_balance=0)


def test_adaptive_weight_manager():
    base = RewardWeights(dice=0.4, nsd=0.2, hd95=0.1, pr_balance=0.1, compactness=0.1, fg_balance=0.1)
    m = AdaptiveWeightManager(base, rate=1.0, min_factor=0.5, max_factor=2.0)
    # gaps: dice 0.1, nsd 0.3, hd95 0.5, others 0.1 -> mean gap 0.2
    new = m.update({"dice": 0.9, "nsd": 0.7, "hd95": 0.5, "pr_balance": 0.9, "compactness": 0.9, "fg_balance": 0.9})
    assert new["nsd"] == pytest.approx(0.2 * 1.5)
    assert new["hd95"] == pytest.approx(0.1 * 2.0)  # 2.5 clipped to 2
    assert new["pr_balance"] == pytest.approx(0.1 * 0.5)
    assert new["dice"] == pytest.approx(0.4)  # 0.4 * 0.5 = 0.2, but never below its base
    assert len(m.history) == 2
    half = AdaptiveWeightManager(base, rate=0.5)
    assert half.update({t: 0.5 for t in TERMS})["nsd"] == pytest.approx(0.2)  # equal gaps: unchanged
    assert half.update({t: 1.0 for t in TERMS}) == half.weights  # nothing to improve: unchanged
