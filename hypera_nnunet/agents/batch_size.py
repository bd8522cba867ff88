"""BatchSizeAgent: nnU-Net's batch size, changed between epochs within a memory bound.

* Knob: ``batch_size`` -- ``round(plans_batch * m)``, clipped to ``[min_batch_size, max_batch_size]``.
  ``max_batch_size`` is the memory bound; by default it is the plans' batch size, because nnU-Net
  sized that batch to the GPU memory target, so the agent may only go below it unless allowed.
  The executed log-multiplier (after rounding) is what the agent learns from.
* Hook: epoch start; the trainer rebuilds its dataloaders when the value changes.
* Reward: shared, plus throughput: minus the relative change of epoch time.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypera_nnunet.agents.base import Hook, HyperparameterAgent
from hypera_nnunet.config import AgentSettings


@dataclass(frozen=True)
class BatchSizeSettings(AgentSettings):
    """``min_batch_size``; ``max_batch_size`` (None: the plans' batch size)."""

    min_batch_size: int = 2
    max_batch_size: int | None = None


class BatchSizeAgent(HyperparameterAgent):
    name = "batch_size"
    hook = Hook.EPOCH_START
    knobs = ("batch_size",)
    Settings = BatchSizeSettings

    def specialised_reward(self, signals) -> float:
        t = signals.epoch_times
        if len(t) < 2 or t[-2] <= 0:
            return 0.0
        return -(t[-1] - t[-2]) / t[-2]
