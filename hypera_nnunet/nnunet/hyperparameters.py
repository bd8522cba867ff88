"""nnU-Net's own hyperparameters from a configuration's ``nnunet:`` section, and a per-epoch record for a search.

:class:`NNUNetHyperparameters` is a trainer mixin. It applies :class:`hypera_nnunet.settings.NNUNetSettings` in
``initialize()``, before nnU-Net builds its network, optimizer and loss, so that everything downstream (HYPERA's
knobs, nnU-Net's own hooks, a resumed run) sees the configured values as "nnU-Net's values". Each setting left null
keeps nnU-Net's. Where each value lands (nnU-Net 2.x):

* ``initial_lr``, ``weight_decay``: the trainer's attributes of those names, read by ``configure_optimizers``;
* ``momentum``: the SGD parameter groups after ``configure_optimizers`` (nnU-Net writes 0.99 there);
* ``schedule_epochs``: the poly scheduler's ``max_steps`` (nnU-Net: ``num_epochs``);
* ``ce_weight``, ``dice_weight``: ``DC_and_CE_loss.weight_ce/weight_dice`` (inside the deep-supervision wrapper);
* ``batch_size``: the configuration's batch size, before nnU-Net derives its per-rank batch from it;
* ``aug_prob``, ``aug_strength``: :func:`hypera_nnunet.nnunet.pipeline.scale_transforms` on the training pipeline;
* ``epochs``, ``iterations``: ``num_epochs``, ``num_iterations_per_epoch`` (and the validation iterations);
* ``poly_exponent``: the poly scheduler's ``exponent``; ``warmup_epochs``: a factor on the learning rate after
  nnU-Net's scheduler has set it at each epoch start; ``ce_weight_late``: ``weight_ce`` at each epoch start;
* ``stop_patience``, ``stop_min_delta``: after nnU-Net's ``on_epoch_end`` (its checkpoints written), a plateau ends
  the epoch loop; ``run_training`` then runs ``on_train_end`` (the final checkpoint), and ``nnUNetv2_train`` goes
  on to nnU-Net's final validation as after a full run.

:class:`EpochRecord` appends one JSON line per finished epoch to ``fold_X/epochs.jsonl`` (rank 0): the epoch, its
EMA pseudo-Dice, losses and seconds. ``hypera-nnunet search`` reads it from another process to report each epoch to
its pruner; a torn last line (a killed run) is skipped by :func:`read_epochs`, and a resumed run's repeated epochs
replace the earlier lines of the same epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.nnunet.budget import val_iterations
from hypera_nnunet.nnunet.pipeline import scale_transforms
from hypera_nnunet.settings import NNUNetSettings

EPOCHS_FILE = "epochs.jsonl"
EARLY_STOP_FILE = "early_stop.json"


class StopTraining(Exception):
    """Raised after an epoch to end nnU-Net's epoch loop early (caught in ``run_training``)."""


def plateau(ema: list[float], patience: int, min_delta: float) -> bool:
    """True when none of the last ``patience`` values rose more than ``min_delta`` above the best before them."""
    if len(ema) <= patience:
        return False
    return max(ema[-patience:]) <= max(ema[:-patience]) + min_delta


def _inner_loss(loss):
    """nnU-Net's compound loss inside its deep-supervision wrapper (``loss.loss``), or ``loss`` itself."""
    return getattr(loss, "loss", loss)


class NNUNetHyperparameters:
    """Mixin: apply :meth:`nnunet_settings` to nnU-Net's trainer. Put it before nnU-Net's class in the bases."""

    def nnunet_settings(self) -> NNUNetSettings:
        """The settings to apply (override; this default applies none)."""
        return NNUNetSettings()

    def initialize(self):
        s = self.nnunet_settings()
        self._nnunet_settings = s
        if s.initial_lr is not None:
            self.initial_lr = float(s.initial_lr)
        if s.weight_decay is not None:
            self.weight_decay = float(s.weight_decay)
        if s.epochs is not None:
            self.num_epochs = int(s.epochs)
        if s.iterations is not None:
            self.num_iterations_per_epoch = int(s.iterations)
            self.num_val_iterations_per_epoch = val_iterations(int(s.iterations))
        if s.batch_size is not None:  # a new dict: the plans' own stay as planned
            cm = self.configuration_manager
            cm.configuration = {**cm.configuration, "batch_size": int(s.batch_size)}
        super().initialize()

    def configure_optimizers(self):
        optimizer, scheduler = super().configure_optimizers()
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        if s.momentum is not None:
            for g in optimizer.param_groups:
                g["momentum"] = float(s.momentum)
                if s.momentum == 0 and g.get("nesterov"):
                    g["nesterov"] = False  # torch refuses Nesterov without momentum
        if s.schedule_epochs is not None and hasattr(scheduler, "max_steps"):
            scheduler.max_steps = int(s.schedule_epochs)
        if s.poly_exponent is not None and hasattr(scheduler, "exponent"):
            scheduler.exponent = float(s.poly_exponent)
        return optimizer, scheduler

    def on_train_epoch_start(self):
        super().on_train_epoch_start()  # nnU-Net's poly step sets the epoch's learning rate
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        e = self.current_epoch
        if s.warmup_epochs and e < s.warmup_epochs:
            for g in self.optimizer.param_groups:
                g["lr"] = g["lr"] * (e + 1) / (s.warmup_epochs + 1)
            self.logger.local_logger.my_fantastic_logging["lrs"][e] = self.optimizer.param_groups[0]["lr"]
        if s.ce_weight_late is not None:
            early = 1.0 if s.ce_weight is None else float(s.ce_weight)
            frac = e / max(1, self.num_epochs - 1)
            _inner_loss(self.loss).weight_ce = early + (float(s.ce_weight_late) - early) * frac

    def on_epoch_end(self):
        super().on_epoch_end()  # nnU-Net's checkpoints of this epoch are written, current_epoch advanced
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        if not s.stop_patience or self.current_epoch >= self.num_epochs:
            return
        ema = [float(x) for x in self.logger.local_logger.my_fantastic_logging["ema_fg_dice"]]
        delta = float(s.stop_min_delta or 0.0)
        if plateau(ema, int(s.stop_patience), delta):
            done, total = self.current_epoch, self.num_epochs
            record = {"stopped_after_epoch": done - 1, "epochs_trained": done, "num_epochs": total,
                      "epochs_left": total - done, "budget_left": round((total - done) / total, 4),
                      "best_ema_fg_dice": max(ema), "stop_patience": int(s.stop_patience), "stop_min_delta": delta}
            if self.local_rank == 0:
                atomic_write_json(Path(self.output_folder) / EARLY_STOP_FILE, record)
            self.print_to_log_file(f"HYPERA: stopped early after epoch {done - 1}: the EMA pseudo-Dice has not risen "
                                   f"by more than {delta:g} for {s.stop_patience} epochs; {total - done} of {total} "
                                   f"epochs ({record['budget_left']:.0%} of the budget) left")
            raise StopTraining

    def run_training(self):
        try:
            super().run_training()
        except StopTraining:
            self.on_train_end()

    def load_checkpoint(self, filename_or_checkpoint_dict):
        """nnU-Net's, then this run's momentum and weight decay again: the checkpoint's optimizer state carries the
        values of the run that wrote it (a population-based search continues another trial's checkpoint with new
        values; the learning rate follows from ``initial_lr`` at every epoch start anyway)."""
        super().load_checkpoint(filename_or_checkpoint_dict)
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        for g in self.optimizer.param_groups:
            if s.momentum is not None:
                g["momentum"] = float(s.momentum)
            if s.weight_decay is not None:
                g["weight_decay"] = float(s.weight_decay)

    def _build_loss(self):
        loss = super()._build_loss()
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        inner = _inner_loss(loss)
        if s.ce_weight is not None:
            inner.weight_ce = float(s.ce_weight)
        if s.dice_weight is not None:
            inner.weight_dice = float(s.dice_weight)
        return loss

    def get_training_transforms(self, *args, **kwargs):
        t = super().get_training_transforms(*args, **kwargs)
        s = getattr(self, "_nnunet_settings", None) or NNUNetSettings()
        prob = 1.0 if s.aug_prob is None else float(s.aug_prob)
        strength = 1.0 if s.aug_strength is None else float(s.aug_strength)
        if prob != 1.0 or strength != 1.0:
            scale_transforms(t, prob, strength)
        return t


class EpochRecord:
    """Mixin: one line per finished epoch in ``fold_X/epochs.jsonl`` (rank 0), for a search's pruner.

    The line is written after nnU-Net's ``on_epoch_end`` has saved its checkpoints, so when a reader sees epoch e,
    ``checkpoint_latest.pth`` (written every ``save_every`` epochs) already holds it: a population-based search
    copies that checkpoint. A kill between the two leaves an epoch without its line (readers skip the gap)."""

    def on_epoch_end(self):
        epoch = self.current_epoch  # nnU-Net's on_epoch_end advances it
        super().on_epoch_end()
        if getattr(self, "local_rank", 0) == 0:
            self._record_epoch(epoch)

    def _record_epoch(self, epoch: int) -> None:
        def value(key):
            try:
                return float(self.logger.get_value(key, step=epoch))
            except (KeyError, IndexError, TypeError, ValueError, AssertionError):
                return None

        t0, t1 = value("epoch_start_timestamps"), value("epoch_end_timestamps")
        line = {"epoch": epoch, "ema_fg_dice": value("ema_fg_dice"), "train_loss": value("train_losses"),
                "val_loss": value("val_losses"), "seconds": None if t0 is None or t1 is None else t1 - t0,
                "num_epochs": int(self.num_epochs)}
        phases = getattr(self, "last_epoch_phases", None)  # PhaseTiming's parts of this epoch, if it is a base
        if phases is not None:
            line["phases"] = phases
        path = Path(self.output_folder) / EPOCHS_FILE
        with open(path, "a", encoding="utf-8") as f:  # one write per line: a kill tears at most the last line
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_epochs(path: str | os.PathLike) -> dict[int, dict]:
    """Epoch -> its record from an ``epochs.jsonl`` (a resumed run's later line of an epoch wins; torn or damaged
    lines are skipped). A missing file is no epochs yet."""
    out: dict[int, dict] = {}
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return out
    for raw in text.splitlines():
        try:
            rec = json.loads(raw)
            out[int(rec["epoch"])] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return out
