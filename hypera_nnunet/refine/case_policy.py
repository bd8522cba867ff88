"""A per-case refinement policy (issue 17): from a case's state (:mod:`.case_state`) to one of a class's candidate
refinements, the identity always among them.

**Why a full-information contextual bandit, not SAC.** Refinement is one step per case and class: there is no
next state, so SAC's critic and bootstrapping add nothing but variance. And at fit time every candidate can be
applied to every training case with the labels at hand, so each case gives the reward of *every* action, not only
of the one taken: there is no exploration problem, and the policy is a regression of each candidate's reward on
the state (cost-sensitive classification; Beygelzimer & Langford 2009, "The offset tree for learning with partial
labels", reduce bandits to it). With a few hundred cross-validation cases, a ridge regression per candidate on
standardised features is what that data supports; it is deterministic, and it costs a dot product per candidate
at apply time.

**Choice.** A case gets the candidate of the highest predicted reward if that prediction beats the identity's by
more than ``margin``; otherwise the identity. Rewards are relative to the identity (the identity's reward is 0 by
construction), so the identity needs no model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IDENTITY = 0  # candidate 0 is always "leave the class as it is"


@dataclass
class RidgeBandit:
    """Per-candidate ridge regressions of the reward gain over the identity.

    :param l2: the ridge penalty on standardised features (the intercept is not penalised).
    :param margin: a case leaves the identity only if a candidate's predicted gain exceeds this.
    """

    l2: float = 1.0
    margin: float = 0.0
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    weights: np.ndarray | None = None  # (K, d + 1): intercept first; row IDENTITY is zero

    def fit(self, states: np.ndarray, gains: np.ndarray) -> RidgeBandit:
        """:param states: (N, d) case states. :param gains: (N, K) each candidate's reward minus the identity's
        (column IDENTITY is 0)."""
        x = np.asarray(states, dtype=np.float64)
        g = np.asarray(gains, dtype=np.float64)
        g = np.where(np.isfinite(g), g, -1.0)  # a guarded-out candidate (-inf) is fitted as the worst Dice change
        if x.ndim != 2 or g.ndim != 2 or len(x) != len(g):
            raise ValueError(f"states {x.shape} and gains {g.shape} must be (N, d) and (N, K)")
        self.mean = x.mean(0)
        sd = x.std(0)
        self.scale = np.where(sd > 0, sd, 1.0)
        z = np.hstack([np.ones((len(x), 1)), (x - self.mean) / self.scale])
        pen = self.l2 * np.eye(z.shape[1])
        pen[0, 0] = 0.0
        w = np.linalg.solve(z.T @ z + pen, z.T @ g).T
        w[IDENTITY] = 0.0
        self.weights = w
        return self

    def predict(self, states: np.ndarray) -> np.ndarray:
        """(N, K) predicted gains over the identity."""
        if self.weights is None:
            raise ValueError("the policy is not fitted")
        x = np.atleast_2d(np.asarray(states, dtype=np.float64))
        z = np.hstack([np.ones((len(x), 1)), (x - self.mean) / self.scale])
        return z @ self.weights.T

    def choose(self, states: np.ndarray) -> np.ndarray:
        """(N,) the chosen candidate per case (deterministic; ties go to the lower index)."""
        pred = self.predict(states)
        best = np.argmax(pred, axis=1)
        return np.where(pred[np.arange(len(pred)), best] > self.margin, best, IDENTITY)

    def to_dict(self) -> dict:
        return {"l2": self.l2, "margin": self.margin, "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> RidgeBandit:
        return cls(l2=float(d["l2"]), margin=float(d["margin"]), mean=np.asarray(d["mean"], float),
                   scale=np.asarray(d["scale"], float), weights=np.asarray(d["weights"], float))


def guarded_gain(dice_before: dict[int, float], dice_after: dict[int, float], label: int,
                 other_tolerance: float = 0.0) -> float:
    """A candidate's reward gain for ``label`` in one case: its Dice change, or ``-inf`` when another class's Dice
    falls by more than ``other_tolerance`` (such a candidate is never the best, whatever it does for ``label``).
    NaN Dice (a class absent from prediction and label alike) counts as no change."""
    def d(x):
        return 0.0 if np.isnan(x) else x

    for other, before in dice_before.items():
        if other != label and d(dice_after[other]) < d(before) - other_tolerance:
            return -np.inf
    return d(dice_after[label]) - d(dice_before[label])
