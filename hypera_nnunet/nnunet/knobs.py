"""The knobs: where each hyperparameter lives on an ``nnUNetTrainer``, in log-multiplier units.

``apply(name, x)`` sets the hyperparameter to nnU-Net's own value times ``exp(x)`` (or the knob's
documented mapping) and returns the log-multiplier really executed (after rounding, clipping or a
skipped rebuild). ``x = 0`` everywhere is nnU-Net's behaviour.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

NESTEROV_OFF_BELOW = -0.35  # log-multiplier under which Nesterov is switched off (about -log(2)/2)
REBUILD_TOLERANCE = 0.05  # log units: smaller augmentation changes do not restart the dataloaders


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


class NNUNetKnobs:
    """Knobs of one ``nnUNetTrainer`` (after ``initialize`` and dataloader creation)."""

    def __init__(self, trainer, min_batch_size: int = 2, max_batch_size: int | None = None) -> None:
        self.t = trainer
        opt = trainer.optimizer
        g0 = opt.param_groups[0]
        self.lr_base = g0["lr"]
        self.names: list[str] = ["lr"]
        self.state: dict[str, float] = {}
        loss = trainer.loss
        self.ds = loss if hasattr(loss, "weight_factors") and loss.weight_factors is not None else None
        self.inner = loss.loss if self.ds is not None else loss
        if hasattr(self.inner, "weight_ce") and hasattr(self.inner, "weight_dice"):
            self.w_sum = float(self.inner.weight_ce + self.inner.weight_dice)
            self.ce_logit0 = _logit(float(self.inner.weight_ce) / self.w_sum) if self.w_sum > 0 else 0.0
            self.names.append("ce_dice_balance")
        if self.ds is not None:
            self.ds_base = tuple(float(w) for w in self.ds.weight_factors)
            self.names.append("ds_decay")
        if not trainer.is_ddp:  # per-GPU batch sizes under DDP are nnU-Net's to split; not changed there
            self.bs_base = int(trainer.configuration_manager.batch_size)
            self.bs_min = max(1, int(min_batch_size))
            self.bs_max = int(max_batch_size) if max_batch_size is not None else self.bs_base
            self.names.append("batch_size")
        self.names += ["aug_prob", "aug_strength"]
        self.wd_base = float(g0.get("weight_decay", 0.0))
        if self.wd_base > 0:
            self.names.append("weight_decay")
        self.dropouts = [m for m in trainer.network.modules()
                         if isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0]
        self.dropout_base = [m.p for m in self.dropouts]
        if self.dropouts:
            self.names.append("dropout")
        if "momentum" in g0 and 0 < g0["momentum"] < 1:
            self.mom_base = float(g0["momentum"])
            self.names.append("momentum")
            if "nesterov" in g0:
                self.nesterov_base = bool(g0["nesterov"])
                self.names.append("nesterov")
        self.names = tuple(self.names)

    def apply(self, name: str, x: float) -> float:
        x = float(x)
        t, groups = self.t, self.t.optimizer.param_groups
        if name == "lr":
            for g in groups:
                g["lr"] = self.lr_base * math.exp(x)
        elif name == "ce_dice_balance":
            w_ce = self.w_sum * _sigmoid(2 * x + self.ce_logit0)
            self.inner.weight_ce, self.inner.weight_dice = w_ce, self.w_sum - w_ce
        elif name == "ds_decay":
            m = math.exp(x)
            w = np.array([b ** m if b > 0 else b for b in self.ds_base])
            self.ds.weight_factors = tuple(float(v) for v in w / w.sum() * sum(self.ds_base))
        elif name == "batch_size":
            bs = int(np.clip(round(self.bs_base * math.exp(x)), self.bs_min, self.bs_max))
            if bs != t.batch_size:
                t.batch_size = bs
                t.hypera_rebuild_dataloaders()
            x = math.log(bs / self.bs_base)
        elif name in ("aug_prob", "aug_strength"):
            built = math.log(t.hypera_aug[name])
            if abs(x - built) > REBUILD_TOLERANCE:
                t.hypera_aug[name] = math.exp(x)
                t.hypera_rebuild_dataloaders("augmentation")
            else:
                x = built
        elif name == "weight_decay":
            for g in groups:
                g["weight_decay"] = self.wd_base * math.exp(x)
        elif name == "dropout":
            for m, b in zip(self.dropouts, self.dropout_base):
                m.p = float(min(0.9, b * math.exp(x)))
        elif name == "momentum":
            for g in groups:
                g["momentum"] = 1 - (1 - self.mom_base) * math.exp(x)
        elif name == "nesterov":
            for g in groups:
                g["nesterov"] = self.nesterov_base and x >= NESTEROV_OFF_BELOW
        else:
            raise KeyError(f"unknown knob {name!r}")
        self.state[name] = x
        return x

    def pop_extra_timings(self) -> dict[str, float]:
        """Seconds spent restarting dataloaders since the last call (reported separately)."""
        s, self.t.hypera_rebuild_s = self.t.hypera_rebuild_s, 0.0
        return {"dataloader_rebuild": s}

    def value(self, name: str):
        """The hyperparameter's real value, for the decision log."""
        t, g0 = self.t, self.t.optimizer.param_groups[0]
        if name == "lr":
            return g0["lr"]
        if name == "ce_dice_balance":
            return [float(self.inner.weight_ce), float(self.inner.weight_dice)]
        if name == "ds_decay":
            return [round(w, 6) for w in self.ds.weight_factors]
        if name == "batch_size":
            return int(t.batch_size)
        if name in ("aug_prob", "aug_strength"):
            return float(t.hypera_aug[name])
        if name == "weight_decay":
            return g0["weight_decay"]
        if name == "dropout":
            return [m.p for m in self.dropouts]
        if name == "momentum":
            return g0["momentum"]
        if name == "nesterov":
            return bool(g0["nesterov"])
        raise KeyError(f"unknown knob {name!r}")


def scale_transforms(transform, prob: float, strength: float):
    """Scale probabilities and amplitudes of nnU-Net's batchgeneratorsv2 training pipeline in place.

    ``prob`` multiplies ``RandomTransform.apply_probability`` and the spatial transform's
    ``p_rotation``/``p_scaling`` (clipped to [0, 1]). ``strength`` scales ranges towards identity:
    noise variance and blur sigma upper bounds, brightness/contrast/gamma ranges around 1, the
    scaling range around 1 and the rotation angles. Returns the transform.
    """
    from batchgeneratorsv2.transforms.intensity.contrast import BGContrast
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    def around_one(r):
        if isinstance(r, BGContrast):
            r.contrast_range = around_one(r.contrast_range)
            return r
        if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
            lo, hi = r
            return (max(0.05, 1 - (1 - lo) * strength), 1 + (hi - 1) * strength)
        return r

    def upper(r):
        if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
            return (r[0], r[0] + (r[1] - r[0]) * strength)
        return r

    def visit(t):
        if isinstance(t, RandomTransform):
            t.apply_probability = float(min(1.0, t.apply_probability * prob))
            visit(t.transform)
            return
        if isinstance(t, SpatialTransform):
            t.p_rotation = float(min(1.0, t.p_rotation * prob))
            t.p_scaling = float(min(1.0, t.p_scaling * prob))
            t.scaling = around_one(t.scaling)
            if isinstance(t.rotation, (tuple, list)) and len(t.rotation) == 2:
                t.rotation = (t.rotation[0] * strength, t.rotation[1] * strength)
        for attr in ("noise_variance", "blur_sigma"):
            if hasattr(t, attr):
                setattr(t, attr, upper(getattr(t, attr)))
        for attr in ("multiplier_range", "contrast_range", "gamma"):
            if hasattr(t, attr):
                setattr(t, attr, around_one(getattr(t, attr)))
        for child in getattr(t, "transforms", []) or []:
            visit(child)

    visit(transform)
    return transform


def total_norm(tensors) -> torch.Tensor:
    """L2 norm over a list of tensors, without a host sync."""
    tensors = [t for t in tensors if t is not None]
    if not tensors:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))
