"""Refinement steps: bounded parameters, identity defaults, pure actions, encode/decode for the search."""

import numpy as np
import pytest
from refine_testdata import ro, synthetic_prediction

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import steps as st


@pytest.fixture(scope="module")
def case():
    gt, probs, seg = synthetic_prediction((16, 18, 16), np.random.default_rng(0))
    return ro(seg), ro(probs)


@pytest.mark.parametrize("step", st.make_steps(), ids=lambda a: a.name)
def test_identity_parameters_change_nothing(step, case):
    seg, probs = case
    for label in (1, 2):
        out = step.act(seg, probs, label=label, params=step.neutral(), spacing=(1.0, 1.0, 1.0))
        assert out is not seg and (out == seg).all()


@pytest.mark.parametrize("step", st.make_steps(), ids=lambda a: a.name)
def test_actions_are_pure_and_deterministic(step, case):
    seg, probs = case
    rng = np.random.default_rng(1)
    for _ in range(4):
        params = step.decode(rng.uniform(size=len(step.space)))
        a = step.act(seg, probs, label=1, params=params, spacing=(1.0, 1.0, 1.0))
        b = step.act(seg, probs, label=1, params=params, spacing=(1.0, 1.0, 1.0))
        assert (a == b).all() and set(np.unique(a)) <= {0, 1, 2}


@pytest.mark.parametrize("step", st.make_steps(), ids=lambda a: a.name)
def test_encode_decode_round_trip_and_bounds(step):
    rng = np.random.default_rng(2)
    for _ in range(20):
        params = step.decode(rng.uniform(-0.5, 1.5, size=len(step.space)))  # out-of-cube values are clipped
        assert step.decode(step.encode(params)) == params
        for p in step.space:
            v = getattr(params, p.name)
            assert isinstance(v, bool) if p.kind == "bool" else p.low <= v <= p.high
    assert step.decode(step.encode(step.neutral())) == step.neutral()


def test_parameters_are_bounded():
    with pytest.raises(ConfigError, match="outside its bounds"):
        st.ThresholdGrowParams(threshold=0.9)
    with pytest.raises(ConfigError, match="integer"):
        st.MorphologyParams(close_radius=1.5)
    with pytest.raises(ConfigError, match="true or false"):
        st.ComponentParams(keep_largest=1)
    with pytest.raises(ConfigError, match="no parameter"):
        st.BoundaryLevelStep().params_from_dict({"sigma": 1.0})
    assert st.BoundaryLevelStep().params_from_dict({"band": 2.0}).band == 2


def test_make_steps_order_legacy_names_and_errors():
    assert [a.name for a in st.make_steps(["components", "threshold_grow"])] == ["threshold_grow", "components"]
    assert [a.name for a in st.make_steps(["object", "fg_balance", "boundary"])] == ["foreground_prior",
                                                                                    "boundary_level", "components"]
    with pytest.raises(ConfigError, match="unknown step"):
        st.make_steps(["threshold_grow", "magic"])


def test_morphology_step_composes_in_order():
    seg = np.zeros((5, 5, 5), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[2, 2, 2] = 0
    out = st.MorphologyStep().act(ro(seg), None, label=1, params=st.MorphologyParams(fill_holes=True))
    assert out.sum() == 27
    # opening after filling: the 3x3x3 cube opened by the 6-neighbourhood cross keeps the cross (7 voxels)
    out = st.MorphologyStep().act(ro(seg), None, label=1, params=st.MorphologyParams(fill_holes=True, open_radius=1))
    assert out.sum() == 7


def test_segmentation_only_steps_ignore_probabilities(case):
    seg, probs = case
    for step in (st.MorphologyStep(), st.ComponentFilterStep()):
        assert not step.uses_probabilities
        params = step.decode(np.full(len(step.space), 0.8))
        assert (step.act(seg, probs, label=2, params=params) == step.act(seg, None, label=2, params=params)).all()


def test_param_encoding_exact_values():
    level = st.Param("level", "float", 0.3, 0.7)
    assert level.decode(0.25) == pytest.approx(0.4, abs=1e-15) and level.encode(0.4) == pytest.approx(0.25, abs=1e-15)
    assert level.decode(-3.0) == 0.3 and level.decode(7.0) == 0.7  # clipped to the unit interval
    size = st.Param("min_size_voxels", "int", 0, 500, power=2.0)
    assert size.decode(0.5) == 125  # floor(501 * 0.5 ** 2)
    assert size.encode(125) == ((125 + 0.5) / 501) ** 0.5 and size.decode(size.encode(125)) == 125
    assert size.decode(1.0) == 500
    flag = st.Param("grow", "bool")
    assert (flag.encode(True), flag.encode(False), flag.decode(0.5), flag.decode(0.49)) == (0.75, 0.25, True, False)
