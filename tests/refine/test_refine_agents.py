"""Agents: bounded parameters, identity defaults, pure actions, encode/decode for the search."""

import numpy as np
import pytest
from refine_testdata import ro, synthetic_prediction

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.refine import agents as ag


@pytest.fixture(scope="module")
def case():
    gt, probs, seg = synthetic_prediction((16, 18, 16), np.random.default_rng(0))
    return ro(seg), ro(probs)


@pytest.mark.parametrize("agent", ag.make_agents(), ids=lambda a: a.name)
def test_identity_parameters_change_nothing(agent, case):
    seg, probs = case
    for label in (1, 2):
        out = agent.act(seg, probs, label=label, params=agent.neutral(), spacing=(1.0, 1.0, 1.0))
        assert out is not seg and (out == seg).all()


@pytest.mark.parametrize("agent", ag.make_agents(), ids=lambda a: a.name)
def test_actions_are_pure_and_deterministic(agent, case):
    seg, probs = case
    rng = np.random.default_rng(1)
    for _ in range(4):
        params = agent.decode(rng.uniform(size=len(agent.space)))
        a = agent.act(seg, probs, label=1, params=params, spacing=(1.0, 1.0, 1.0))
        b = agent.act(seg, probs, label=1, params=params, spacing=(1.0, 1.0, 1.0))
        assert (a == b).all() and set(np.unique(a)) <= {0, 1, 2}


@pytest.mark.parametrize("agent", ag.make_agents(), ids=lambda a: a.name)
def test_encode_decode_round_trip_and_bounds(agent):
    rng = np.random.default_rng(2)
    for _ in range(20):
        params = agent.decode(rng.uniform(-0.5, 1.5, size=len(agent.space)))  # out-of-cube values are clipped
        assert agent.decode(agent.encode(params)) == params
        for p in agent.space:
            v = getattr(params, p.name)
            assert isinstance(v, bool) if p.kind == "bool" else p.low <= v <= p.high
    assert agent.decode(agent.encode(agent.neutral())) == agent.neutral()


def test_parameters_are_bounded():
    with pytest.raises(ConfigError, match="outside its bounds"):
        ag.RegionParams(threshold=0.9)
    with pytest.raises(ConfigError, match="integer"):
        ag.ShapeParams(close_radius=1.5)
    with pytest.raises(ConfigError, match="true or false"):
        ag.ObjectParams(keep_largest=1)
    with pytest.raises(ConfigError, match="no parameter"):
        ag.BoundaryAgent().params_from_dict({"sigma": 1.0})
    assert ag.BoundaryAgent().params_from_dict({"band": 2.0}).band == 2


def test_make_agents_order_and_errors():
    assert [a.name for a in ag.make_agents(["object", "region"])] == ["region", "object"]
    with pytest.raises(ConfigError, match="unknown agent"):
        ag.make_agents(["region", "magic"])


def test_shape_agent_composes_in_order():
    seg = np.zeros((5, 5, 5), dtype=np.uint8)
    seg[1:4, 1:4, 1:4] = 1
    seg[2, 2, 2] = 0
    out = ag.ShapeAgent().act(ro(seg), None, label=1, params=ag.ShapeParams(fill_holes=True))
    assert out.sum() == 27
    # opening after filling: the 3x3x3 cube opened by the 6-neighbourhood cross keeps the cross (7 voxels)
    out = ag.ShapeAgent().act(ro(seg), None, label=1, params=ag.ShapeParams(fill_holes=True, open_radius=1))
    assert out.sum() == 7


def test_segmentation_only_agents_ignore_probabilities(case):
    seg, probs = case
    for agent in (ag.ShapeAgent(), ag.ObjectAgent()):
        assert not agent.uses_probabilities
        params = agent.decode(np.full(len(agent.space), 0.8))
        assert (agent.act(seg, probs, label=2, params=params) == agent.act(seg, None, label=2, params=params)).all()
