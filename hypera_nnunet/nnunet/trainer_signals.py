"""The trainer's side of the state: gradient norms per optimizer step, and :class:`Signals` from nnU-Net's logger."""

from __future__ import annotations

from time import time

import torch

from hypera_nnunet.control.signals import Signals


def total_norm(tensors) -> torch.Tensor:
    """L2 norm over a list of tensors, without a host sync."""
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


def build_signals(trainer, grad_norms: list[float]) -> Signals:
    """What nnU-Net has logged so far (losses, pseudo-Dice, its EMA, epoch times), plus ``grad_norms``."""
    get = trainer.logger.get_value
    starts, ends = get("epoch_start_timestamps", None), get("epoch_end_timestamps", None)
    times = [e - s for s, e in zip(starts, ends)]
    if len(starts) > len(ends):
        times.append(time() - starts[-1])
    with torch.no_grad():
        w = float(total_norm([p.detach() for p in trainer.network.parameters()]))
    return Signals(
        epoch=trainer.current_epoch, num_epochs=trainer.num_epochs,
        train_losses=[float(v) for v in get("train_losses", None)],
        val_losses=[float(v) for v in get("val_losses", None)],
        pseudo_dice=[float(v) for v in get("mean_fg_dice", None)],
        ema_dice=[float(v) for v in get("ema_fg_dice", None)],
        epoch_times=times, grad_norms=list(grad_norms), weight_norm=w,
    )
