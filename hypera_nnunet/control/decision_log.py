"""``decisions.jsonl``: one JSON line per epoch, appended and flushed; its recovery on resume; fingerprints.

Only rank 0 writes, and only one training per fold (the trainer holds the fold's lock). On resume the
log keeps its valid prefix: lines that parse as a JSON object whose integer ``epoch`` is larger than the
line before's (a resume after a repair continues at its checkpoint's epoch, leaving a gap). From the
first line that does not (a torn line, undecodable bytes, ``42``, ``{"epoch": "x"}``, a repeated epoch),
the whole tail is moved aside to ``decisions.damaged-<UTC time>[-n].jsonl``, never deleted, and
:meth:`DecisionLog.truncate_from` says so. Valid lines of epochs the resumed run will repeat (written after
the checkpoint it resumes from) are superseded and dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypera_nnunet.common.atomic_io import atomic_write_bytes, json_default


def fingerprint(state) -> str:
    """A short hash of a nested state (tensors, arrays, scalars): equal states, equal fingerprints."""
    import torch

    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif torch.is_tensor(x):
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(np.ascontiguousarray(x).tobytes())
        else:
            h.update(repr(x).encode())

    feed(state)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Recovery:
    """What :meth:`DecisionLog.truncate_from` did.

    :param kept: lines kept (the valid prefix's records of epochs before the resume epoch).
    :param superseded: valid lines of epochs at or after the resume epoch, dropped.
    :param damaged: where the damaged tail went (None: the log was intact).
    :param reason: what was wrong with the first damaged line."""

    kept: int
    superseded: int = 0
    damaged: Path | None = None
    reason: str = ""

    def message(self, path: Path) -> str | None:
        if self.damaged is None:
            return None
        kept = f"kept its first {self.kept} records" if self.kept else "kept no record"
        return f"HYPERA: {path} is damaged ({self.reason}); {kept} and moved the lines after them to {self.damaged}"


def _epoch_of(raw: bytes) -> int | None:
    try:
        return json.loads(raw.decode("utf-8"))["epoch"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        return None


def _check_line(raw: bytes, previous_epoch: int) -> str | None:
    """Why this line is not a record of an epoch after ``previous_epoch`` (None: it is)."""
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return "undecodable bytes"
    except json.JSONDecodeError:
        return "not JSON (torn line?)"
    if not isinstance(rec, dict):
        return f"a JSON {type(rec).__name__}, not a record"
    epoch = rec.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return f"epoch {epoch!r} is not an integer"
    if epoch <= previous_epoch:
        return f"epoch {epoch} after epoch {previous_epoch}"
    return None


class DecisionLog:
    """:param path: the ``decisions.jsonl`` file (its folder is created on the first write)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def truncate_from(self, epoch: int) -> Recovery:
        """On resume at ``epoch``: keep the valid lines of epochs before it; move a damaged tail aside."""
        if not self.path.is_file():
            return Recovery(0)
        lines = self.path.read_bytes().split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        problems, previous = [], -1
        for raw in lines:
            why = _check_line(raw, previous)
            problems.append(why)
            if why is not None:
                break
            previous = _epoch_of(raw)
        first_bad = next((i for i, why in enumerate(problems) if why is not None), len(lines))
        keep = next((i for i, raw in enumerate(lines[:first_bad]) if _epoch_of(raw) >= epoch), first_bad)
        tail = lines[keep:]
        damaged = None
        if first_bad < len(lines):  # the tail holds damage: keep all of it aside, never delete it
            damaged = self._damaged_name()
            atomic_write_bytes(damaged, b"".join(t + b"\n" for t in tail))
        atomic_write_bytes(self.path, b"".join(k + b"\n" for k in lines[:keep]))
        if damaged is None:
            return Recovery(keep, superseded=len(tail))
        return Recovery(keep, damaged=damaged, reason=f"line {first_bad + 1}: {problems[first_bad]}")

    def _damaged_name(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        n = 0
        while True:
            p = self.path.with_name(f"{self.path.stem}.damaged-{stamp}{'' if n == 0 else f'-{n}'}.jsonl")
            if not p.exists():
                return p
            n += 1

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, default=json_default, allow_nan=True) + "\n"
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
