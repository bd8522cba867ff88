"""TensorBoard scalars of what the agents did, one step per epoch (optional: ``pip install
'hypera-nnunet[tensorboard]'``; switched on with ``tensorboard: true`` in the HYPERA configuration).

Each epoch's decision record (the coordinator's ``record``, the same dict as a ``decisions.jsonl`` line) becomes
scalars in ``fold_X/hypera/tensorboard/``: ``knob/<knob>`` (the multiplier of nnU-Net's value; a switch such as
``nesterov`` as 1 on / 0 off), ``reward/<agent>``, ``trust/<agent>``, ``dice/pseudo`` and ``dice/ema``, and
``rollback`` (1 in an epoch that rolled back). ``tensorboard --logdir nnUNet_results`` shows every fold.
"""

from __future__ import annotations

import math
from pathlib import Path

from hypera_nnunet.errors import HyperaError

INSTALL_HINT = "pip install 'hypera-nnunet[tensorboard]'"


def _finite(x) -> float | None:
    if isinstance(x, bool):
        return float(x)
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def record_scalars(record: dict) -> dict[str, float]:
    """The scalars of one decision record, by tag (non-finite and missing values left out)."""
    out: dict[str, float | None] = {}
    values = record.get("values") or {}
    for knob, m in (record.get("multipliers") or {}).items():
        out[f"knob/{knob}"] = float(values[knob]) if isinstance(values.get(knob), bool) else _finite(m)
    for agent, r in (record.get("rewards") or {}).items():
        out[f"reward/{agent}"] = _finite(r)
    for agent, t in (record.get("trust") or {}).items():
        out[f"trust/{agent}"] = _finite(t)
    state = record.get("state") or {}
    out["dice/pseudo"] = _finite(state.get("pseudo_dice"))
    out["dice/ema"] = _finite(state.get("ema_dice"))
    out["rollback"] = 1.0 if record.get("rollback") else 0.0
    return {k: v for k, v in out.items() if v is not None}


class TensorBoardLog:
    """Writes each epoch's record as scalars under ``<fold>/hypera/tensorboard``.

    :param fold_dir: the fold's results folder (nnU-Net's ``output_folder``).
    :param start_epoch: the first epoch this process writes; a resumed run drops the events it repeats
        (``purge_step``), so every epoch appears once.
    :raises HyperaError: the ``tensorboard`` package is not installed (naming the extra to install).
    """

    def __init__(self, fold_dir: str | Path, start_epoch: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise HyperaError(f"tensorboard: true needs the tensorboard package: {INSTALL_HINT}") from None
        self.log_dir = Path(fold_dir) / "hypera" / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=start_epoch or None)

    def write(self, record: dict) -> None:
        """One epoch's decision record (its ``epoch`` is the step)."""
        step = int(record["epoch"])
        for tag, value in record_scalars(record).items():
            self._writer.add_scalar(tag, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
