"""Running z-score with clipping, for rewards whose scale drifts over training."""

from __future__ import annotations

import math


class RunningZScore:
    """Welford's running mean and variance; ``normalize`` returns ``clip((x - mean) / std)``.

    Until ``min_count`` values are seen, the scale is 1 (values are only centred), so the first
    rewards of a run are not blown up by a near-zero variance estimate.
    """

    def __init__(self, clip: float = 5.0, eps: float = 1e-8, min_count: int = 2) -> None:
        self.clip, self.eps, self.min_count = float(clip), float(eps), int(min_count)
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    @property
    def std(self) -> float:
        if self.count < self.min_count:
            return 1.0
        return math.sqrt(self.m2 / (self.count - 1) + self.eps)

    def normalize(self, x: float) -> float:
        z = (x - self.mean) / self.std
        return max(-self.clip, min(self.clip, z))

    def __call__(self, x: float) -> float:
        """Update with ``x`` and return its normalised value."""
        self.update(x)
        return self.normalize(x)

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])
