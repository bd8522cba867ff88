"""Atomic writes: a temporary file in the target's folder, flushed, then ``os.replace`` onto the target.

A reader never sees a half-written file, and a crash (kill -9, a full disk) leaves the old file intact
and at most a stray ``.<name>.<pid>.tmp`` beside it. A failed write is reported as one
:class:`~hypera_nnunet.errors.HyperaError` naming the file, never an ``OSError`` traceback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hypera_nnunet.errors import HyperaError


def json_default(o: Any):
    """``json.dumps(default=...)`` for numpy scalars and arrays, paths and anything else (as ``str``)."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def dumps(obj: Any, indent: int | None = 2) -> str:
    """JSON text with :func:`json_default` (NaN kept as ``NaN``, as nnU-Net's own JSON files do)."""
    return json.dumps(obj, indent=indent, default=json_default, allow_nan=True)


def atomic_write(path: str | os.PathLike, write: Callable[[str], Any], mode: int | None = None) -> Path:
    """Call ``write(tmp_path)``, then move ``tmp_path`` onto ``path``. Returns ``path``.

    :param path: the target file; its folder is created if missing.
    :param write: writes the complete content to the temporary path it is given.
    :param mode: file permissions of the result (default: the process umask, as ``open`` would give).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(str(tmp))
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with _quiet():
            tmp.unlink(missing_ok=True)
        raise HyperaError(f"could not write {path}: {e.strerror or e}") from None
    except BaseException:
        with _quiet():
            tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, write)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, dumps(obj, indent=indent) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


class _quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return exc[0] is not None and issubclass(exc[0], OSError)
