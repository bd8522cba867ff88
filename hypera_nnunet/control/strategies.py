"""Conflict strategies: how proposals of several agents for one knob become one value.

Each strategy is a function ``(proposals) -> log-multiplier``, registered by name with
:func:`register_strategy`; :data:`STRATEGIES` is the one registry the configuration is checked against.
A single proposal always wins unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class Proposal(Protocol):
    value: float
    confidence: float
    priority: int


Strategy = Callable[[Sequence[Proposal]], float]
STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str) -> Callable[[Strategy], Strategy]:
    """Decorator: make ``fn`` available as ``strategy: <name>`` in the configuration."""

    def deco(fn: Strategy) -> Strategy:
        if name in STRATEGIES:
            raise ValueError(f"strategy '{name}' is registered twice")
        STRATEGIES[name] = fn
        return fn

    return deco


@register_strategy("weighted_average")
def weighted_average(proposals: Sequence[Proposal]) -> float:
    """Sum of ``confidence * value`` over the sum of confidences (the plain mean if all are 0)."""
    w = sum(p.confidence for p in proposals)
    if w <= 0:
        return sum(p.value for p in proposals) / len(proposals)
    return sum(p.confidence * p.value for p in proposals) / w


@register_strategy("priority")
def priority(proposals: Sequence[Proposal]) -> float:
    """The value of the highest-priority proposal (the first one on ties)."""
    return max(enumerate(proposals), key=lambda ip: (ip[1].priority, -ip[0]))[1].value


@register_strategy("consensus")
def consensus(proposals: Sequence[Proposal]) -> float:
    """If all non-zero proposals move the same way, the smallest move; otherwise 0 (nnU-Net's value)."""
    signs = {int(np.sign(p.value)) for p in proposals if p.value != 0}
    if len(signs) > 1:
        return 0.0
    return min((p.value for p in proposals), key=abs)


def resolve(proposals: Sequence[Proposal], strategy: str) -> float:
    """Combine proposals for one knob (log-multiplier units) with the named strategy."""
    if not proposals:
        raise ValueError("no proposal to resolve")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; registered: {', '.join(STRATEGIES)}")
    if len(proposals) == 1:
        return proposals[0].value
    return STRATEGIES[strategy](proposals)
