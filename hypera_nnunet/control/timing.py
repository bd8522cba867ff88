"""The agents' time accounting (``overhead_s`` in ``decisions.jsonl``) and one-thread sections."""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict


@contextlib.contextmanager
def single_thread():
    """Run the agents' tiny networks on one thread. With several threads, each small op waits for
    OpenMP workers, and on a busy machine (nnU-Net's dataloaders, other jobs) the waits dominate
    (see docs/overhead.md for the measurement)."""
    import torch

    old = torch.get_num_threads()
    if old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


class Timings:
    """Seconds by part since the last decision line."""

    def __init__(self) -> None:
        self.s: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.s = defaultdict(float)

    def add(self, key: str, seconds: float) -> None:
        self.s[key] += float(seconds)

    @contextlib.contextmanager
    def timed(self, key: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.s[key] += time.perf_counter() - t0

    def total(self) -> float:
        return sum(self.s.values())

    def record(self, extra: dict[str, float] | None = None) -> dict[str, float]:
        """``overhead_s``: each part, their ``total``, then ``extra`` parts already counted in a part."""
        out = {k: round(v, 6) for k, v in self.s.items()}
        out["total"] = round(self.total(), 6)
        out.update({k: round(v, 6) for k, v in (extra or {}).items()})
        return out
