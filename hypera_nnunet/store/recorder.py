"""A run's side of the experience store: its transitions as they happen, its outcome once validated.

:class:`RunRecorder` keeps the run's transitions in memory and rewrites the run's files atomically after each
epoch (:meth:`flush`), so a killed run leaves its last finished epoch. A resumed run (``nnUNetv2_train --c``)
continues the same run id, from the checkpoint's epoch: what was written after the checkpoint is dropped, as
nnU-Net drops those epochs too.
"""

from __future__ import annotations

import time

import numpy as np

from hypera_nnunet.store.experience import FIELDS, ExperienceStore


class RunRecorder:
    """:param store: the store.
    :param run_id: this run's id (:func:`~hypera_nnunet.store.experience.new_run_id`; kept in checkpoints).
    :param meta: what describes the run (trainer, identity, agents, reward reference); written in ``run.json``.
    """

    def __init__(self, store: ExperienceStore, run_id: str, meta: dict) -> None:
        self.store, self.run_id = store, run_id
        self.meta = {**meta, "started_utc": meta.get("started_utc") or _now()}
        self.rows: dict[str, dict[str, list]] = {}
        self.curve: dict[int, float] = {}

    @classmethod
    def resume(cls, store: ExperienceStore, run_id: str, meta: dict, from_epoch: int) -> RunRecorder:
        """Continue ``run_id`` at ``from_epoch``: earlier transitions are kept, later ones dropped."""
        rec = cls(store, run_id, meta)
        if run_id in store.run_ids():
            old = store.read_run(run_id)
            rec.meta["started_utc"] = old.meta.get("started_utc", rec.meta["started_utc"])
            rec.meta["resumed_at"] = [*old.meta.get("resumed_at", []), int(from_epoch)]
            for agent, t in old.transitions.items():
                keep = t.epoch < from_epoch
                rec.rows[agent] = {f: [np.asarray(v) for v in getattr(t, f)[keep]] for f in FIELDS}
            rec.curve = {int(e): float(v) for e, v in enumerate(old.meta.get("ema_fg_dice", [])) if e < from_epoch}
        return rec

    def add(self, agent: str, obs, action, reward: float, next_obs, done: bool, epoch: int) -> None:
        cols = self.rows.setdefault(agent, {f: [] for f in FIELDS})
        for f, v in zip(FIELDS, (obs, action, reward, next_obs, done, epoch)):
            cols[f].append(np.asarray(v))

    def epoch_done(self, epoch: int, ema_fg_dice: float | None) -> None:
        """Note the epoch's pseudo-Dice EMA and write the run's files."""
        if ema_fg_dice is not None:
            self.curve[int(epoch)] = float(ema_fg_dice)
        self.flush()

    def flush(self) -> None:
        n = max(self.curve) + 1 if self.curve else 0
        meta = {**self.meta, "epochs_done": n, "ema_fg_dice": [self.curve.get(e) for e in range(n)]}
        self.store.write_run(self.run_id, meta, self.rows)

    def finish(self, outcome: dict) -> None:
        """The run's outcome (nnU-Net's final validation: Dice per class, foreground mean)."""
        self.meta["outcome"] = {**outcome, "finished_utc": _now()}
        self.flush()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
