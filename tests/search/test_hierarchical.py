"""The hierarchical manager/worker sampler (``--sampler hierarchical``, issue 16 item 4)."""

from __future__ import annotations

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from hypera_nnunet.search.hierarchical import (  # noqa: E402
    GROUP_ATTR,
    HierarchicalSampler,
    Manager,
    group_of,
    replay,
)
from hypera_nnunet.search.study import SAMPLERS  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_the_managers_update_exactly():
    m = Manager(["a", "b", "c"], lr=2.0)
    assert m.update("b", 0.5)["advantage"] == 0.0  # the first reward only sets the baseline
    assert np.array_equal(m.theta, np.zeros(3)) and m.baseline == 0.5
    out = m.update("b", 0.8)  # advantage (0.8 - 0.5) / rms(0.5, 0.8); pi = 1/3 each
    a = 0.3 / np.sqrt((0.25 + 0.64) / 2)
    assert out["advantage"] == pytest.approx(a, abs=1e-15)
    assert np.allclose(m.theta, 2 * a * np.array([-1 / 3, 2 / 3, -1 / 3]), atol=1e-15)
    assert m.baseline == pytest.approx(0.65, abs=1e-15)
    e = np.exp(m.theta)
    assert np.allclose(m.policy(), e / e.sum(), atol=1e-15)
    m.update("a", 0.35)  # advantage < 0 moves theta away from a
    assert m.theta[0] < -2 * a / 3 and m.baseline == pytest.approx(0.55, abs=1e-15)
    z = Manager(["a", "b"])
    z.update("a", 0.0)
    assert z.update("b", 0.0)["advantage"] == 0.0  # no reward yet: no step


def test_groups():
    assert [group_of(n) for n in ("nnunet.initial_lr", "nnunet.momentum", "nnunet.weight_decay",
                                  "nnunet.poly_exponent", "nnunet.dice_weight", "nnunet.ce_weight_late",
                                  "nnunet.batch_size", "learning.gradient_steps", "reward.terminal_weight", "x1")] \
        == ["optimizer", "optimizer", "optimizer", "optimizer", "loss", "loss", "nnunet.batch_size", "hypera",
            "hypera", "x1"]


def _study(seed: int, n: int, objective):
    study = optuna.create_study(direction="maximize", sampler=HierarchicalSampler(seed=seed, n_startup=4))
    study.optimize(objective, n_trials=n)
    return study


def _only_x1(trial):
    x = [trial.suggest_float(f"x{i}", 0.0, 1.0) for i in (1, 2, 3)]
    return -(x[0] - 0.7) ** 2


def test_a_worker_moves_only_its_group_and_the_rest_is_the_incumbent():
    study = _study(0, 12, _only_x1)
    trials = study.trials
    for t in trials[4:]:
        worker = t.system_attrs[GROUP_ATTR]
        earlier = [u for u in trials[: t.number] if u.value is not None]
        inc = max(earlier, key=lambda u: u.value)
        assert t.system_attrs["hypera:incumbent_value"] == inc.value
        for name, v in t.params.items():
            if name != worker:
                assert v == inc.params[name]


def test_same_seed_same_proposals_and_replay_agrees():
    a, b = _study(3, 20, _only_x1), _study(3, 20, _only_x1)
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    m1 = replay(a.trials, ["x1", "x2", "x3"])
    m2 = replay(b.trials, ["x1", "x2", "x3"])
    assert np.array_equal(m1.theta, m2.theta)


def test_the_manager_learns_which_group_matters():
    """Only x1 changes the value: moves of x2 and x3 earn exactly 0, so after 60 trials the manager prefers x1."""
    study = _study(0, 60, _only_x1)
    m = replay(study.trials, ["x1", "x2", "x3"])
    pi = dict(zip(m.workers, m.policy()))
    assert pi["x1"] > 0.5 and pi["x1"] > pi["x2"] and pi["x1"] > pi["x3"]
    assert study.best_value > -0.002


def test_registered():
    from hypera_nnunet.search.space import parse_space

    space = parse_space({"objective": "hartmann", "fidelity": {"min_epochs": 3, "max_epochs": 9},
                         "params": {f"x{i}": {"low": 0.0, "high": 1.0} for i in range(1, 7)}}, "s.yaml")
    assert isinstance(SAMPLERS["hierarchical"](space, 0), HierarchicalSampler)
