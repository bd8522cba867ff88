"""The per-case policy's core on a toy task it must learn exactly, its round trip, and the guarded gain."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.refine.case_policy import IDENTITY, RidgeBandit, guarded_gain


def _toy(n=41):
    x = np.linspace(-1, 1, n)[:, None]
    gains = np.hstack([np.zeros((n, 1)), 0.1 * x, 0.05 - 0.1 * x])  # identity, "grow", "shrink"
    return x, gains


def test_a_linear_toy_is_learned_exactly():
    x, gains = _toy()
    pol = RidgeBandit(l2=0.0).fit(x, gains)
    assert pol.predict(x) == pytest.approx(gains, abs=1e-12)
    assert pol.choose(np.array([[0.9], [-0.9], [0.2], [0.3]])).tolist() == [1, 2, 2, 1]  # they cross at x = 0.25
    assert np.all(pol.weights[IDENTITY] == 0)


def test_the_margin_keeps_the_identity_unless_a_gain_is_clear():
    x, gains = _toy()
    pol = RidgeBandit(l2=0.0, margin=0.12).fit(x, gains)
    assert pol.choose(np.array([[0.9], [-0.9], [-0.5]])).tolist() == [IDENTITY, 2, IDENTITY]  # 0.09, 0.14, 0.10


def test_round_trip_and_guarded_out_candidates():
    x, gains = _toy()
    gains[:, 2] = -np.inf  # "shrink" always breaks another class
    pol = RidgeBandit(l2=0.5).fit(x, gains)
    back = RidgeBandit.from_dict(pol.to_dict())
    assert np.array_equal(back.predict(x), pol.predict(x)) and (back.l2, back.margin) == (0.5, 0.0)
    assert not np.any(pol.choose(x) == 2)


def test_guarded_gain_exactly():
    before = {1: 0.80, 2: 0.70}
    assert guarded_gain(before, {1: 0.85, 2: 0.70}, 1) == pytest.approx(0.05)
    assert guarded_gain(before, {1: 0.90, 2: 0.69}, 1) == -math.inf  # class 2 fell
    assert guarded_gain(before, {1: 0.90, 2: 0.69}, 1, other_tolerance=0.02) == pytest.approx(0.10)
    assert guarded_gain({1: float("nan"), 2: 0.7}, {1: float("nan"), 2: 0.7}, 1) == 0.0
