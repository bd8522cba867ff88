"""Test helpers: a fake knob set and synthetic nnU-Net signals (no nnU-Net needed)."""

from __future__ import annotations

import math

from hypera_nnunet.control.signals import Signals

ALL_KNOBS = ("lr", "ce_dice_balance", "ds_decay", "batch_size", "aug_prob", "aug_strength", "weight_decay",
             "momentum", "nesterov")


class FakeKnobs:
    """Records what the coordinator applies; ``value`` is the multiplier (a :class:`KnobSet`)."""

    registered = (*ALL_KNOBS, "dropout")

    def __init__(self, names=ALL_KNOBS):
        self.names = tuple(names)
        self.applied: dict[str, list[float]] = {n: [] for n in self.names}
        self.current = {n: 0.0 for n in self.names}

    def apply(self, name, x):
        self.current[name] = float(x)
        self.applied[name].append(float(x))
        return float(x)

    def value(self, name):
        return math.exp(self.current[name])

    def pop_extra_timings(self):
        return {}


def make_signals(epoch: int, num_epochs: int = 20, dice: float = 0.5, loss: float = 0.3, grad: float = 1.0,
                 history: int | None = None) -> Signals:
    n = epoch + 1 if history is None else history
    return Signals(
        epoch=epoch, num_epochs=num_epochs,
        train_losses=[loss + 0.01 * i for i in range(n)], val_losses=[loss + 0.02 * i for i in range(n)],
        pseudo_dice=[dice] * n, ema_dice=[dice] * n, epoch_times=[10.0] * n,
        grad_norms=[grad, grad * 1.1, grad * 0.9], weight_norm=30.0,
    )
