"""Search studies: recognised, not reported yet.

The search layer (issue 15) is not built, so there is no study to report on. When ``optuna`` is importable, a
path that holds an Optuna journal (``JournalFileStorage``: one JSON object per line with an ``op_code``) is
recognised as a study, so that the user hears that study reports need the search layer rather than that the
path is not a report input at all.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SEARCH_LAYER = ("study reports need the search layer (issue 15: `hypera-nnunet search`, with optuna), which is "
                "not built yet")
JOURNAL_PATTERNS = ("*.log", "*.journal", "*.jsonl")


def optuna_available() -> bool:
    return importlib.util.find_spec("optuna") is not None


def _is_journal(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline(1 << 16)
        rec = json.loads(first)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(rec, dict) and "op_code" in rec


def journal_of(path: Path) -> Path | None:
    """The Optuna journal file at ``path`` (a journal file, or a folder with one); None if there is none, or if
    optuna is not importable (then nothing is recognised as a study)."""
    if not optuna_available():
        return None
    path = Path(path)
    if path.is_file():
        return path if _is_journal(path) else None
    if path.is_dir():
        for pattern in JOURNAL_PATTERNS:
            for p in sorted(path.glob(pattern)):
                if _is_journal(p):
                    return p
    return None
