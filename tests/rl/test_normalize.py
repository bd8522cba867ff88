"""RunningZScore: Welford statistics, warm-up, clipping, state round trip."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.rl import RunningZScore


def test_hand_made_mean_and_std():
    z = RunningZScore(eps=0.0)
    for x in [1.0, 2.0, 3.0, 4.0]:
        z.update(x)
    assert z.count == 4 and z.mean == 2.5
    assert z.std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)  # sample variance (n - 1)
    assert z.normalize(4.0) == pytest.approx(1.5 / math.sqrt(5 / 3), rel=1e-15)


def test_matches_numpy_on_a_long_stream():
    rng = np.random.default_rng(0)
    xs = rng.normal(1e3, 25.0, size=5000)  # large offset: Welford stays accurate
    z = RunningZScore(eps=0.0)
    for x in xs:
        z.update(float(x))
    assert z.mean == pytest.approx(xs.mean(), rel=1e-12)
    assert z.std == pytest.approx(xs.std(ddof=1), rel=1e-9)


def test_warm_up_only_centres():
    z = RunningZScore(min_count=3)
    assert z(10.0) == 0.0  # first value: centred on itself, scale 1
    z.update(20.0)
    assert z.std == 1.0 and z.normalize(17.0) == 2.0  # mean 15, still unscaled before 3 values
    z.update(30.0)
    assert z.std == pytest.approx(10.0, rel=1e-6)


def test_clipping():
    z = RunningZScore(clip=2.0)
    for x in [0.0, 1.0, 0.0, 1.0]:
        z.update(x)
    assert z.normalize(1e6) == 2.0 and z.normalize(-1e6) == -2.0


def test_call_updates_then_normalises():
    a, b = RunningZScore(), RunningZScore()
    for x in [0.3, -1.2, 4.0, 2.2]:
        b.update(x)
        assert a(x) == b.normalize(x)
    assert a.count == 4


def test_state_dict_round_trip():
    a = RunningZScore()
    for x in [0.5, 1.5, -2.0, 7.0]:
        a.update(x)
    b = RunningZScore()
    b.load_state_dict(a.state_dict())
    assert (b.count, b.mean, b.m2) == (a.count, a.mean, a.m2)
    assert b(3.0) == a(3.0)
