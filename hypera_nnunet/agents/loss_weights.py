"""LossFunctionAgent: the balance of nnU-Net's Dice and cross-entropy terms (and optionally deep supervision).

* Knobs: ``ce_dice_balance`` -- ``x``; ``weight_ce = 2 * sigmoid(2x) `` and ``weight_dice = 2 - weight_ce``,
  so the sum stays nnU-Net's 2 (the LR agent owns the overall scale) and ``x = 0`` is nnU-Net's 1:1.
  Optional ``ds_decay`` (``deep_supervision=True``): deep-supervision weights ``(1/2^i)^m`` instead of
  nnU-Net's ``1/2^i``, renormalised, lowest output still 0.
* Hook: epoch start. Applied on nnU-Net's ``DC_and_CE_loss`` (``loss.loss.weight_ce/weight_dice``)
  and ``DeepSupervisionWrapper.weight_factors``.
* Reward: shared, plus the change of the raw (not EMA) pseudo-Dice. Loss values are not used: the
  weights change the loss's own scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypera_nnunet.agents.base import Hook, HyperparameterAgent, register_agent
from hypera_nnunet.settings import AgentSettings, Rule, setting


@dataclass(frozen=True)
class LossSettings(AgentSettings):
    """:param deep_supervision: also adjust the deep-supervision weight decay (true or false)."""

    deep_supervision: bool = setting(False, Rule("bool"))


@register_agent
class LossFunctionAgent(HyperparameterAgent):
    name = "loss"
    hook = Hook.EPOCH_START
    knobs = ("ce_dice_balance",)
    Settings = LossSettings

    @classmethod
    def wanted_knobs(cls, settings: LossSettings) -> tuple[str, ...]:
        return ("ce_dice_balance", "ds_decay") if settings.deep_supervision else ("ce_dice_balance",)

    def specialised_reward(self, signals) -> float:
        d = [v for v in signals.pseudo_dice if math.isfinite(v)]
        return d[-1] - d[-2] if len(d) >= 2 else 0.0
