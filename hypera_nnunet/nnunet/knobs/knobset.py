"""The knob set of one ``nnUNetTrainer``: the registered knobs that this trainer has (a
:class:`~hypera_nnunet.control.knobset.KnobSet`)."""

from __future__ import annotations

from typing import Any

from hypera_nnunet.nnunet.knobs.base import KNOBS, Knob


class NNUNetKnobs:
    """:param trainer: an ``nnUNetTrainer`` after ``initialize`` and dataloader creation.
    :param options: knob name -> options for that knob (e.g. ``{"batch_size": {"min_batch_size": 1}}``).
    :param min_batch_size, max_batch_size: shortcuts for the batch-size knob's options (``options`` wins)."""

    def __init__(self, trainer, options: dict[str, dict] | None = None, min_batch_size: int = 2,
                 max_batch_size: int | None = None) -> None:
        self.t = trainer
        options = {"batch_size": {"min_batch_size": min_batch_size, "max_batch_size": max_batch_size},
                   **(options or {})}
        self.registered: tuple[str, ...] = tuple(sorted(KNOBS, key=lambda n: KNOBS[n].position))
        self.knobs: dict[str, Knob] = {}
        for name in self.registered:
            knob = KNOBS[name](**options.get(name, {}))
            if knob.detect(trainer):
                self.knobs[name] = knob
        self.names: tuple[str, ...] = tuple(self.knobs)
        self.rebuild_s = 0.0

    def _knob(self, name: str) -> Knob:
        if name not in self.knobs:
            raise KeyError(f"unknown knob {name!r}; this trainer has {', '.join(self.names)}")
        return self.knobs[name]

    def apply(self, name: str, x: float) -> float:
        return float(self._knob(name).apply(self.t, float(x)))

    def value(self, name: str) -> Any:
        return self._knob(name).value(self.t)

    def on_epoch_start(self) -> None:
        """After nnU-Net's ``on_train_epoch_start``: knobs whose base nnU-Net moves re-read it (the poly LR)."""
        for k in self.knobs.values():
            k.on_epoch_start(self.t)

    def pop_extra_timings(self) -> dict[str, float]:
        """Seconds spent restarting dataloaders since the last call (reported separately)."""
        s, self.t.hypera_rebuild_s = getattr(self.t, "hypera_rebuild_s", 0.0), 0.0
        return {"dataloader_rebuild": s}
