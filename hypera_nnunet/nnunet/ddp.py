"""Under DDP the agents decide on rank 0 and every rank applies rank 0's values.

Each rank runs the same coordinator on its own signals (epoch times, for one, differ between ranks), so
left alone the ranks would apply different hyperparameters to one model. The coordinator sends every
decision (the knob values and the rollback verdict) through :func:`broadcast_from_rank0`; only rank 0
writes HYPERA's files.
"""

from __future__ import annotations

from typing import Any


def broadcast_from_rank0(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (``torch.distributed`` must be initialised)."""
    import torch.distributed as dist

    obj = [value if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(obj, src=0)
    return obj[0]
