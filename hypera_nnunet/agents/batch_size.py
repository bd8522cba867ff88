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

from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent
from hypera_nnunet.settings import AgentSettings, Rule, SettingError, setting


@dataclass(frozen=True)
class BatchSizeSettings(AgentSettings):
    """:param min_batch_size: the smallest batch (an integer >= 1).
    :param max_batch_size: the memory bound (an integer >= min_batch_size; None: the plans' batch size)."""

    min_batch_size: int = setting(2, Rule("int", ge=1))
    max_batch_size: int | None = setting(None, Rule("int", ge=1, optional=True))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_batch_size is not None and self.min_batch_size > self.max_batch_size:
            raise SettingError("min_batch_size", self.min_batch_size,
                               f"<= max_batch_size ({self.max_batch_size})")


@register_agent
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
