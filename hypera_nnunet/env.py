"""nnU-Net's environment: the three folder variables and ``nnUNet_extTrainer``.

nnU-Net finds trainers outside its own package through ``nnUNet_extTrainer`` (folders separated by
``os.pathsep``). It imports each module there as a top-level module and drops it from ``sys.modules``
afterwards, so the real classes live in :mod:`hypera_nnunet.nnunet.trainers` (importable, hence
picklable) and the folder only holds a thin re-export.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_text
from hypera_nnunet.errors import HyperaError

NNUNET_FOLDER_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
EXT_TRAINER_VAR = "nnUNet_extTrainer"
_REEXPORT_MODULE = "hypera_trainers.py"
_REEXPORT_SOURCE = (
    '"""Thin re-export so that nnU-Net\'s nnUNet_extTrainer lookup finds the HYPERA trainers.\n\n'
    "The classes live in hypera_nnunet.nnunet.trainers, so they pickle across nnU-Net's worker processes;\n"
    "budget variants are built there on first use, through the module __getattr__ re-exported here.\n"
    '"""\n\n'
    "from hypera_nnunet.nnunet.trainers import *  # noqa: F401,F403\n"
    "from hypera_nnunet.nnunet.trainers import __getattr__  # noqa: F401\n"
)


def ext_trainer_dir() -> Path:
    """The folder to put on ``nnUNet_extTrainer``.

    In a source checkout (``pip install -e .``) this is the repository's ``trainers/``. For a wheel
    install, the same one-line re-export is written once to ``~/.cache/hypera_nnunet/trainers``.
    """
    repo_dir = Path(__file__).resolve().parents[1] / "trainers"
    if (repo_dir / _REEXPORT_MODULE).is_file():
        return repo_dir
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hypera_nnunet" / "trainers"
    target = cache / _REEXPORT_MODULE
    if not target.is_file() or target.read_text() != _REEXPORT_SOURCE:
        atomic_write_text(target, _REEXPORT_SOURCE)
    return cache


def ext_trainer_value(current: str | None = None) -> str:
    """``nnUNet_extTrainer`` with our folder included exactly once, other folders kept in order."""
    ours = str(ext_trainer_dir())
    parts = [p for p in (current or "").split(os.pathsep) if p.strip()]
    if ours not in parts:
        parts.append(ours)
    return os.pathsep.join(parts)


def nnunet_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``os.environ`` with ``nnUNet_extTrainer`` set, for running nnU-Net's CLI."""
    env = dict(os.environ)
    env[EXT_TRAINER_VAR] = ext_trainer_value(env.get(EXT_TRAINER_VAR))
    if extra:
        env.update(extra)
    return env


def require_nnunet_folders(names: tuple[str, ...] = NNUNET_FOLDER_VARS) -> dict[str, Path]:
    """Return the nnU-Net folders, or raise one clear error naming every missing variable."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise HyperaError(
            f"nnU-Net environment variable(s) not set: {', '.join(missing)}. Set them as nnU-Net's docs describe "
            "(https://github.com/MIC-DKFZ/nnUNet/blob/master/documentation/set_environment_variables.md), "
            "e.g. `export nnUNet_raw=/data/nnUNet_raw`."
        )
    return {n: Path(os.environ[n]) for n in names}


def shell_exports() -> str:
    """Lines for ``eval "$(hypera-nnunet env)"``."""
    lines = [f"export {EXT_TRAINER_VAR}={_quote(ext_trainer_value(os.environ.get(EXT_TRAINER_VAR)))}"]
    for name in NNUNET_FOLDER_VARS:
        if not os.environ.get(name):
            lines.append(f"# {name} is not set: nnU-Net needs it (export {name}=/path/to/{name})")
    return "\n".join(lines)


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
