"""A hierarchical manager/worker search (SAM-HRL-HS) as an Optuna sampler (``--sampler hierarchical``).

SAM-HRL-HS proposes a meta-optimiser in two levels: workers that each tune one group of hyperparameters, and a
manager that learns which worker should act next, by policy gradient with an advantage,
``grad J = E[grad log pi_M(a|s) A_M(s, a)]``.

* **Groups** (:func:`group_of`): nnU-Net's optimizer settings (learning rate, momentum, weight decay, poly
  exponent, warm-up), its loss weights, its augmentation, and HYPERA's own settings (every section but ``nnunet``);
  any other parameter is a group of its own.
* **A worker** proposes new values for its group only: a Gaussian step of ``STEP_SD`` in the encoded unit box around
  the incumbent (the best finished trial so far, else the pruned trial that got furthest; a categorical parameter is
  redrawn with probability ``REDRAW``),
  every other parameter is copied from the incumbent. A coordinate-block local search, as in the document.
* **The manager** is a softmax policy over the workers, ``pi(g) = softmax(theta)_g``, with no state (a bandit over
  workers; the document's state is the search history, which the incumbent already summarises). A worker's reward
  is the improvement it made, ``r = max(0, value - incumbent's value)`` (a pruned trial's value is its last report):
  a worker whose parameters do not matter earns exactly 0, and one whose moves sometimes improve earns more on
  average. (With the raw value as reward, a worker that moves nothing that matters reproduces the incumbent's value,
  above the average, and would be preferred.) After a trial of worker g, REINFORCE with a baseline
  (Williams, 1992): ``theta <- theta + LR * A * (onehot(g) - pi)`` with the advantage ``A = (r - b) / s``: b is the
  mean of the earlier rewards (the baseline; the first trial's advantage is 0) and s the root mean square of all
  rewards so far, so that the step does not depend on the objective's scale.

The manager is replayed from the study's trials in trial order at every proposal (:func:`replay`), so several
worker processes sharing one journal agree on it without shared memory. The first ``n_startup`` trials (finished or
pruned: under Optuna's Hyperband a sampler sees only the trials of its bracket, where few finish) are random.
Randomness comes from the sampler's own generator, never the global ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hypera_nnunet.search.ensemble_sampler import _decode, _encode_value, _width
from hypera_nnunet.search.sampler_base import RandomStartSampler

LR = 0.5  # the manager's step, on scale-free advantages
STEP_SD = 0.1
REDRAW = 0.5
GROUP_ATTR = "hypera:worker"
INCUMBENT_ATTR = "hypera:incumbent_value"
_OPTIMIZER = ("lr", "momentum", "weight_decay", "poly", "warmup")
_LOSS = ("dice", "ce_", "loss")
_AUG = ("aug", "rotation", "scale", "mirror", "elastic", "gamma")


def group_of(name: str) -> str:
    """The worker that owns a parameter (see the module)."""
    section, _, key = name.partition(".")
    if not key:
        return name
    if section != "nnunet":
        return "hypera"
    for group, words in (("optimizer", _OPTIMIZER), ("loss", _LOSS), ("augmentation", _AUG)):
        if any(w in key for w in words):
            return group
    return name


class Manager:
    """The softmax policy over workers and its REINFORCE-with-baseline update.

    :param workers: the workers' names (the order of ``theta``).
    :param lr: the policy-gradient step.
    """

    def __init__(self, workers: Sequence[str], lr: float = LR) -> None:
        self.workers = list(workers)
        self.lr = float(lr)
        self.theta = np.zeros(len(self.workers))
        self.baseline: float | None = None
        self.n = 0
        self._sq = 0.0  # sum of squared rewards

    def policy(self) -> np.ndarray:
        z = np.exp(self.theta - self.theta.max())
        return z / z.sum()

    def update(self, worker: str, reward: float) -> dict:
        """One REINFORCE step for a trial of ``worker`` that scored ``reward``; returns the advantage and policy."""
        g = self.workers.index(worker)
        reward = float(reward)
        self._sq += reward * reward
        rms = math.sqrt(self._sq / (self.n + 1))
        advantage = 0.0 if self.baseline is None or rms == 0.0 else (reward - self.baseline) / rms
        pi = self.policy()
        grad = -pi
        grad[g] += 1.0
        self.theta = self.theta + self.lr * advantage * grad
        self.n += 1
        self.baseline = float(reward) if self.baseline is None else self.baseline + (reward - self.baseline) / self.n
        return {"advantage": advantage, "policy": self.policy().tolist()}


def _value(t) -> float | None:
    from optuna.trial import TrialState

    if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
        return float(t.value)
    if t.state == TrialState.PRUNED and t.intermediate_values:
        v = t.intermediate_values[max(t.intermediate_values)]
        return float(v) if math.isfinite(v) else None
    return None


def replay(trials, workers: Sequence[str], sign: float = 1.0, lr: float = LR) -> Manager:
    """The manager after every finished or pruned trial that a worker proposed, in trial order; each trial's
    reward is its improvement over the incumbent value recorded when it was proposed."""
    m = Manager(workers, lr)
    for t in sorted(trials, key=lambda t: t.number):
        w, v, inc = t.system_attrs.get(GROUP_ATTR), _value(t), t.system_attrs.get(INCUMBENT_ATTR)
        if w in m.workers and v is not None and inc is not None:
            m.update(w, max(0.0, sign * (v - float(inc))))
    return m


def _incumbent(trials, sign: float):
    """(trial, value): the best finished trial; without one, the pruned trial that got furthest, best value first."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state == TrialState.COMPLETE and _value(t) is not None]
    if done:
        t = max(done, key=lambda t: sign * t.value)
        return t, float(t.value)
    pruned = [t for t in trials if _value(t) is not None]
    if not pruned:
        return None
    t = max(pruned, key=lambda t: (max(t.intermediate_values), sign * _value(t)))
    return t, _value(t)


class HierarchicalSampler(RandomStartSampler):
    """Optuna sampler: random for ``n_startup`` trials, then a worker chosen by the manager moves its group.

    :param seed: the sampler's generator.
    :param n_startup: random trials first.
    :param lr: the manager's policy-gradient step.
    """

    def __init__(self, seed: int | None = None, n_startup: int = 8, lr: float = LR) -> None:
        super().__init__(seed)
        self._n_startup, self._lr = n_startup, lr
        self.last: dict = {}

    def sample_relative(self, study, trial, search_space):
        from optuna.trial import TrialState

        if not search_space:
            return {}
        # finished and pruned trials both count: under Optuna's Hyperband a sampler sees only the trials of the
        # current trial's bracket, where few trials finish
        seen = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if len(seen) < self._n_startup:
            return {}
        sign = -1.0 if study.direction.name == "MINIMIZE" else 1.0
        names = sorted(search_space)
        workers = sorted({group_of(n) for n in names})
        manager = replay(seen, workers, sign, self._lr)
        pi = manager.policy()
        worker = workers[int(self._rng.choice(len(workers), p=pi))]
        incumbent = _incumbent([t for t in seen if all(n in t.params for n in names)], sign)
        if incumbent is None:
            return {}
        incumbent, incumbent_value = incumbent
        out = {}
        for n in names:
            dist = search_space[n]
            value = incumbent.params[n]
            if group_of(n) == worker:
                value = self._move(dist, value)
            out[n] = value
        study._storage.set_trial_system_attr(trial._trial_id, GROUP_ATTR, worker)
        study._storage.set_trial_system_attr(trial._trial_id, INCUMBENT_ATTR, float(incumbent_value))
        self.last = {"worker": worker, "policy": dict(zip(workers, pi.tolist())), "incumbent": incumbent.number}
        return out

    def _move(self, dist, value):
        import optuna.distributions as od

        if isinstance(dist, od.CategoricalDistribution):
            if self._rng.random() < REDRAW:
                return dist.choices[int(self._rng.integers(len(dist.choices)))]
            return value
        u = np.array(_encode_value(dist, value), dtype=float)
        u = u + self._rng.normal(0.0, STEP_SD, size=_width(dist))
        return _decode(dist, np.clip(u, 0.0, 1.0))
