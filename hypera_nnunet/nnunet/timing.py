"""Where an epoch's wall time goes: data loading, training steps, validation, checkpoints, the rest.

nnU-Net's own "Epoch time" runs from ``on_epoch_start`` to the first line of ``on_epoch_end``, so it leaves out
what ``on_epoch_end`` does after it: saving ``checkpoint_best.pth`` (whenever the EMA pseudo-Dice improves, which
is most epochs of a rising curve) and drawing ``progress.png``. :class:`PhaseTiming` times the whole epoch, from
the start of ``on_epoch_start`` to the end of ``on_epoch_end``, and its parts:

* ``train_data`` / ``val_data``: waiting for the next batch (``next(dataloader)``: with ``nnUNet_n_proc_DA=0`` the
  augmentation runs here, in the training process);
* ``train_step`` / ``val_step``: nnU-Net's ``train_step`` and ``validation_step`` (forward, loss, backward and
  optimizer step; a HYPERA trainer's gradient-norm hook runs inside the optimizer step);
* ``checkpoint``: ``save_checkpoint`` (a HYPERA trainer's agent state written beside it included);
* ``plot``: the logger's ``plot_progress_png``;
* ``rest``: the epoch's wall time not in a part above (hooks, logging; a HYPERA trainer's coordinator).

The parts go into each line of ``fold_X/epochs.jsonl`` (:class:`~hypera_nnunet.nnunet.hyperparameters.EpochRecord`)
as ``phases``. The clocks only read ``time.perf_counter``: no random number is drawn, nothing is synchronised, so a
seeded run gives the same weights with or without them.
"""

from __future__ import annotations

from collections import defaultdict
from time import perf_counter

PARTS = ("train_data", "train_step", "val_data", "val_step", "checkpoint", "plot")


_TIMED_CLASSES: dict[type, type] = {}


def _timed_class(cls: type) -> type:
    """A subclass of the loader's class whose ``__next__`` adds its seconds to the loader's clock: the loader keeps
    its class for nnU-Net's and HYPERA's ``isinstance`` tests (which decide how it is stopped or rebuilt)."""
    if cls not in _TIMED_CLASSES:
        def __next__(self):
            seconds, key = self._hypera_clock
            t0 = perf_counter()
            try:
                return cls.__next__(self)
            finally:
                seconds[key] += perf_counter() - t0

        _TIMED_CLASSES[cls] = type(cls.__name__, (cls,), {"__next__": __next__, "__module__": cls.__module__})
    return _TIMED_CLASSES[cls]


def _time_loader(loader, seconds: dict[str, float], key: str) -> None:
    if loader is None or not hasattr(type(loader), "__next__"):
        return
    loader._hypera_clock = (seconds, key)
    if type(loader) not in _TIMED_CLASSES.values():
        loader.__class__ = _timed_class(type(loader))


def _untime_loader(loader) -> None:
    cls = type(loader)
    for base, timed in _TIMED_CLASSES.items():
        if cls is timed:
            loader.__class__ = base


class PhaseTiming:
    """Mixin: time each epoch's parts (see the module). Put it before nnU-Net's class in the bases."""

    @property
    def _phases(self) -> dict[str, float]:
        if getattr(self, "_phase_s", None) is None:
            self._phase_s = defaultdict(float)
        return self._phase_s

    def get_dataloaders(self):
        # also when an agent rebuilds the loaders for a new batch size
        train, val = super().get_dataloaders()
        _time_loader(train, self._phases, "train_data")
        _time_loader(val, self._phases, "val_data")
        return train, val

    def on_train_start(self):
        super().on_train_start()
        self.last_epoch_phases: dict[str, float] | None = None
        plot = self.logger.plot_progress_png

        def timed_plot(output_folder):
            t0 = perf_counter()
            try:
                return plot(output_folder)
            finally:
                self._phases["plot"] += perf_counter() - t0

        self.logger.plot_progress_png = timed_plot

    def on_train_end(self):
        for loader in (self.dataloader_train, self.dataloader_val):
            _untime_loader(loader)
        super().on_train_end()

    def on_epoch_start(self):
        self._phases.clear()
        self._epoch_t0 = perf_counter()
        super().on_epoch_start()

    def _timed(self, key: str, fn, *args):
        if getattr(self, "_epoch_t0", None) is None:  # outside the epoch loop (final checkpoint, validation)
            return fn(*args)
        t0 = perf_counter()
        try:
            return fn(*args)
        finally:
            self._phases[key] += perf_counter() - t0

    def train_step(self, batch: dict) -> dict:
        return self._timed("train_step", super().train_step, batch)

    def validation_step(self, batch: dict) -> dict:
        return self._timed("val_step", super().validation_step, batch)

    def save_checkpoint(self, filename: str) -> None:
        return self._timed("checkpoint", super().save_checkpoint, filename)

    def on_epoch_end(self):
        super().on_epoch_end()
        if self._epoch_t0 is None:
            return
        wall = perf_counter() - self._epoch_t0
        parts = {k: round(self._phases.get(k, 0.0), 4) for k in PARTS}
        parts["rest"] = round(wall - sum(self._phases.get(k, 0.0) for k in PARTS), 4)
        parts["wall"] = round(wall, 4)
        self.last_epoch_phases = parts
        self._epoch_t0 = None
