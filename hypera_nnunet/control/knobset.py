"""What the coordinator expects of a trainer's knobs: a typed interface, no feature sniffing.

Knobs are in log-multiplier units: ``0`` is nnU-Net's own value, ``x`` means nnU-Net's value times
``exp(x)`` (or the knob's documented mapping). :class:`hypera_nnunet.nnunet.knobs.NNUNetKnobs` is the
real implementation; ``tests/hypera_fakes.py`` has a fake.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class KnobSet(Protocol):
    #: the knobs this trainer has, in a fixed order (the order of the state vector's knob features)
    names: tuple[str, ...]
    #: every knob name that exists at all (registered); an agent naming anything else is a configuration error
    registered: tuple[str, ...]

    def apply(self, name: str, x: float) -> float:
        """Set knob ``name`` to log-multiplier ``x``; return the log-multiplier really executed
        (after rounding, clipping or a skipped rebuild)."""

    def value(self, name: str) -> Any:
        """The hyperparameter's real value, for the decision log."""

    def pop_extra_timings(self) -> dict[str, float]:
        """Seconds spent on the trainer's side for the knobs since the last call (e.g. dataloader
        rebuilds), reported in ``overhead_s`` beside the coordinator's parts."""
