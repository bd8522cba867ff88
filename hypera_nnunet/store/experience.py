"""The experience store: what HYPERA's agents did in earlier runs, and nnU-Net's own curves to compare with.

A folder (``store:`` in the configuration, or ``$HYPERA_STORE``)::

    STORE/store.json                     {"format": "hypera-store", "version": 1}
    STORE/runs/<run id>/run.json         the run: trainer, dataset, plans, fold, seed, budget, its agents and, once
                                         nnU-Net has validated it, its outcome (final Dice per class)
    STORE/runs/<run id>/transitions.npz  each agent's (state, action, reward, next state, done, epoch)
    STORE/baselines/<key>.json           a seeded nnU-Net run's pseudo-Dice EMA by epoch and its final Dice

Append-only and safe with several writers: each run writes only its own folder (its id is unique: time, pid
and a random part), every file is written to a temporary name and renamed, so a reader sees a whole file or the
previous one, and a killed run leaves its last complete epoch. A baseline's key names everything its curve
depends on (:func:`baseline_key`): two runs that write one key wrote the same seeded curve. Reading a damaged
file raises one :class:`~hypera_nnunet.errors.HyperaError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hypera_nnunet.common.atomic_io import atomic_write, atomic_write_json
from hypera_nnunet.errors import HyperaError

STORE_ENV = "HYPERA_STORE"
FORMAT = {"format": "hypera-store", "version": 1}
FIELDS = ("obs", "action", "reward", "next_obs", "done", "epoch")
#: what a baseline curve depends on; the key is a hash of these values
KEY_FIELDS = ("dataset", "fingerprint", "plans", "plans_hash", "configuration", "fold", "seed", "num_epochs",
              "iterations")


def store_path(configured: str | None = None) -> Path | None:
    """The store of this run: the configuration's ``store:``, else ``$HYPERA_STORE``, else None."""
    value = configured or os.environ.get(STORE_ENV) or None
    return Path(value).expanduser() if value else None


def baseline_key(identity: dict) -> str:
    """A short hash of a run's identity (:data:`KEY_FIELDS`): equal for runs that draw the same seeded curve."""
    missing = [k for k in KEY_FIELDS if k not in identity]
    if missing:
        raise HyperaError(f"a baseline identity lacks {missing}")
    text = json.dumps({k: identity[k] for k in KEY_FIELDS}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def new_run_id(fold, seed) -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-f{fold}-s{seed}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HyperaError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise HyperaError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(obj, dict):
        raise HyperaError(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


@dataclass
class RunTransitions:
    """One agent's transitions of one run, as arrays (rows in the order they happened)."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray
    epoch: np.ndarray

    def __len__(self) -> int:
        return len(self.reward)


@dataclass
class StoredRun:
    run_id: str
    meta: dict
    transitions: dict[str, RunTransitions] = field(default_factory=dict)

    @property
    def outcome(self) -> dict | None:
        return self.meta.get("outcome")


class ExperienceStore:
    """Read and write one store folder.

    :param root: the store's folder (created on the first write).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # ---- writing -------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the store (its ``store.json``), or check that the folder is one."""
        marker = self.root / "store.json"
        if marker.exists():
            found = _read_json(marker)
            if found.get("format") != FORMAT["format"]:
                raise HyperaError(f"{marker}: not a HYPERA experience store (format {found.get('format')!r})")
            return
        if self.root.exists() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
            raise HyperaError(f"{self.root}: the folder is not empty and has no store.json; give an empty or new "
                              "folder for an experience store")
        atomic_write_json(marker, FORMAT)

    def write_run(self, run_id: str, meta: dict, transitions: dict[str, dict[str, list]]) -> Path:
        """Write (or rewrite, a later epoch) a run's ``run.json`` and ``transitions.npz``, each atomically.

        :param transitions: agent -> field (:data:`FIELDS`) -> rows.
        """
        self.ensure()
        folder = self.root / "runs" / run_id
        arrays = {}
        for agent, cols in transitions.items():
            if "__" in agent:
                raise HyperaError(f"agent name {agent!r} contains '__'")
            for f in FIELDS:
                dtype = np.int64 if f == "epoch" else np.float32
                arrays[f"{agent}__{f}"] = np.asarray(cols[f], dtype=dtype)

        def save(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())

        atomic_write(folder / "transitions.npz", save)
        atomic_write_json(folder / "run.json", {**meta, "run_id": run_id})
        return folder

    def write_baseline(self, identity: dict, curve: list[float], final: dict | None, source: str) -> Path:
        """Store a seeded baseline run's pseudo-Dice EMA by epoch (and its final Dice, once validated)."""
        self.ensure()
        key = baseline_key(identity)
        path = self.root / "baselines" / f"{key}.json"
        atomic_write_json(path, {"key": key, "identity": {k: identity[k] for k in KEY_FIELDS},
                                 "trainer": identity.get("trainer"), "ema_fg_dice": [float(x) for x in curve],
                                 "final": final, "source": source,
                                 "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        return path

    # ---- reading -------------------------------------------------------------------------------
    def run_ids(self) -> list[str]:
        runs = self.root / "runs"
        return sorted(p.name for p in runs.iterdir() if (p / "run.json").is_file()) if runs.is_dir() else []

    def read_run(self, run_id: str) -> StoredRun:
        folder = self.root / "runs" / run_id
        meta = _read_json(folder / "run.json")
        path = folder / "transitions.npz"
        out: dict[str, RunTransitions] = {}
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    data = {k: z[k] for k in z.files}
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
                raise HyperaError(f"{path}: damaged transitions file ({e})") from None
            for agent in sorted({k.split("__")[0] for k in data}):
                try:
                    out[agent] = RunTransitions(*(data[f"{agent}__{f}"] for f in FIELDS))
                except KeyError as e:
                    raise HyperaError(f"{path}: agent '{agent}' lacks the field {e.args[0]!r}") from None
        return StoredRun(run_id, meta, out)

    def runs(self) -> list[StoredRun]:
        return [self.read_run(r) for r in self.run_ids()]

    def baselines(self) -> list[dict]:
        folder = self.root / "baselines"
        return [_read_json(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []

    def baseline(self, identity: dict) -> dict | None:
        """The stored baseline of exactly this identity, or None."""
        path = self.root / "baselines" / f"{baseline_key(identity)}.json"
        return _read_json(path) if path.is_file() else None

    def reference_curve(self, identity: dict) -> tuple[list[float], int] | None:
        """The mean curve of the stored baselines that differ from ``identity`` only in fold and seed (same
        dataset, plans, configuration and budget), with how many there were; None if there are none."""
        same = ("dataset", "fingerprint", "plans", "plans_hash", "configuration", "num_epochs", "iterations")
        curves = [b["ema_fg_dice"] for b in self.baselines()
                  if all(b["identity"].get(k) == identity.get(k) for k in same)]
        curves = [c for c in curves if len(c) == len(curves[0])] if curves else []
        if not curves:
            return None
        return [float(x) for x in np.mean(np.asarray(curves, dtype=float), axis=0)], len(curves)

    def describe(self) -> str:
        """A few lines: runs, transitions per agent, outcomes, baselines."""
        runs = self.runs()
        per_agent: dict[str, int] = {}
        for r in runs:
            for a, t in r.transitions.items():
                per_agent[a] = per_agent.get(a, 0) + len(t)
        done = [r for r in runs if r.outcome]
        lines = [f"{self.root}: {len(runs)} run(s), {len(done)} with an outcome, {len(self.baselines())} baseline "
                 "curve(s)"]
        for a, n in sorted(per_agent.items()):
            lines.append(f"  agent {a}: {n} transitions")
        for r in runs:
            m = r.meta
            ident = m.get("identity") or {}
            fg = (r.outcome or {}).get("foreground_mean")
            lines.append(f"  run {r.run_id}: {m.get('trainer')} fold {ident.get('fold')} seed {ident.get('seed')}, "
                         f"{m.get('epochs_done', 0)} epoch(s), reward {m.get('reward_reference', '?')}, "
                         f"final fg Dice {'-' if fg is None else f'{fg:.4f}'}")
        return "\n".join(lines)
