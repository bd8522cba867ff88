"""One knob: where one hyperparameter lives on an ``nnUNetTrainer``, in log-multiplier units.

A knob detects itself on a trainer (after ``initialize`` and dataloader creation), remembers nnU-Net's
value as its base, applies a log-multiplier (``x = 0`` is nnU-Net's own value) and returns the one
really executed (after rounding, clipping or a skipped rebuild), and reports the real value for the
decision log. Knobs are registered by name in :data:`KNOBS`; a knob's ``position`` is its place among
the knob features of the agents' state vector, so it is permanent (a saved policy depends on it).
"""

from __future__ import annotations

from typing import Any

KNOBS: dict[str, type[Knob]] = {}


def register_knob(cls: type[Knob]) -> type[Knob]:
    """Class decorator: make the knob available under ``cls.name``."""
    if cls.name in KNOBS or cls.position in {k.position for k in KNOBS.values()}:
        raise ValueError(f"knob '{cls.name}' (position {cls.position}) is registered twice")
    KNOBS[cls.name] = cls
    return cls


class Knob:
    """Base class: subclasses set ``name`` and implement the four methods.

    :param options: knob-specific settings (e.g. the batch size's bounds), from the agents' settings.
    """

    name: str = ""
    #: the knob's place in the state vector's knob features (permanent; see the package docstring)
    position: int = -1

    def __init__(self, **options: Any) -> None:
        self.options = options

    def detect(self, trainer) -> bool:
        """Whether this trainer has the hyperparameter; remembers nnU-Net's value when it does."""
        raise NotImplementedError

    def apply(self, trainer, x: float) -> float:
        """Set the hyperparameter to nnU-Net's value times ``exp(x)``; return the executed ``x``."""
        raise NotImplementedError

    def value(self, trainer) -> Any:
        """The hyperparameter's real value, for the decision log."""
        raise NotImplementedError

    def on_epoch_start(self, trainer) -> None:
        """After nnU-Net's own epoch start (e.g. the poly LR step): refresh the base if nnU-Net moves it."""
