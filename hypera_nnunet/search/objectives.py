"""Objectives of a search: a trial's configuration in, one value out (higher is better), each epoch reported.

An objective is called with the search space and a :class:`TrialRun` (the trial's sampled values, its folder and
``report(epoch, value) -> bool``, which is True when the pruner stops the trial). It returns the trial's value,
raises :class:`Pruned` when ``report`` said stop, and :class:`TrialFailed` (with the path of the trial's log) when
the training fails. Both objectives below resume: called again on the folder of a trial that was killed, they
continue where it stopped.

* :func:`nnunet_objective`: one ``nnUNetv2_train`` of the trial (trainer ``nnUNetTrainerConfigured`` or a HYPERA
  trainer) with the trial's configuration in ``$HYPERA_CONFIG`` and the search's seed in ``$HYPERA_SEED``, in the
  trial's own ``nnUNet_results``. Each finished epoch's EMA pseudo-Dice (``fold_X/epochs.jsonl``) is reported; the
  value is nnU-Net's validation mean foreground Dice (``fold_X/validation/summary.json``). A trial folder with a
  checkpoint continues with ``--c``.
* :func:`curve_objective`: a deterministic learning curve of the sampled values (no training), a few milliseconds
  per epoch, for tests of the study machinery and for comparing search methods on many repeats.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.errors import HyperaError

CONFIG_FILE = "config.json"
LOG_FILE = "train.log"
POLL_S = 0.5


class Pruned(Exception):
    """The pruner stopped the trial at ``epoch``."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch = epoch


class TrialFailed(HyperaError):
    """The trial's training failed; the message names its log."""


@dataclass
class TrialRun:
    """What an objective gets for one trial.

    :param number: the trial's number in the study.
    :param values: sampled values by dotted setting.
    :param folder: the trial's own folder (its configuration, log and results).
    :param report: ``report(epoch, value)`` (epochs counted from 1) -> True when the trial should stop.
    """

    number: int
    values: dict[str, Any]
    folder: Path
    report: Callable[[int, float], bool]


# ---- nnU-Net --------------------------------------------------------------------------------------------------
def trial_trainer(space) -> str:
    """The trainer a trial runs: the space's trainer at nnU-Net's full budget name (the epochs and iterations come
    from the trial's ``nnunet`` section)."""
    return space.trainer


def fold_folder(space, results: Path) -> Path:
    from hypera_nnunet.data import dataset_name

    name = dataset_name(space.dataset)
    return results / name / f"{trial_trainer(space)}__{space.plans}__{space.configuration}" / f"fold_{space.fold}"


def _has_checkpoint(fold: Path) -> bool:
    return any((fold / f"checkpoint_{k}.pth").is_file() for k in ("final", "latest", "best"))


def nnunet_objective(space, run: TrialRun, stop_grace_s: float = 30.0) -> float:
    """Train the trial with ``nnUNetv2_train``; see the module docstring."""
    from hypera_nnunet.benchmark import children
    from hypera_nnunet.config import CONFIG_ENV
    from hypera_nnunet.data import CPU_ENV, nnunet_exe
    from hypera_nnunet.env import nnunet_env
    from hypera_nnunet.nnunet.hyperparameters import EPOCHS_FILE, read_epochs
    from hypera_nnunet.nnunet.seeding import SEED_ENV

    run.folder.mkdir(parents=True, exist_ok=True)
    cfg_path = run.folder / CONFIG_FILE
    atomic_write_json(cfg_path, space.trial_config(run.values))
    results = run.folder / "nnUNet_results"
    fold = fold_folder(space, results)
    argv = [nnunet_exe("nnUNetv2_train"), space.dataset, space.configuration, str(space.fold),
            "-tr", trial_trainer(space), "-p", space.plans, "-device", space.device]
    if _has_checkpoint(fold):
        argv.append("--c")
    env = nnunet_env(dict(CPU_ENV) if space.device == "cpu" else None)
    env.update({"nnUNet_results": str(results), CONFIG_ENV: str(cfg_path), SEED_ENV: str(space.seed)})
    log_path = run.folder / LOG_FILE
    reported = 0
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        child = children.start(argv, env, log)
        try:
            while True:
                rc = child.reap()
                epochs = read_epochs(fold / EPOCHS_FILE)
                for e in sorted(k for k in epochs if k >= reported):  # in order, each epoch once (resumed too)
                    ema = epochs[e].get("ema_fg_dice")
                    reported = e + 1
                    if ema is not None and math.isfinite(ema) and run.report(reported, float(ema)):
                        child.stop(stop_grace_s)
                        raise Pruned(reported)
                if rc is not None:
                    break
                time.sleep(POLL_S)
        except BaseException:
            child.stop(stop_grace_s)
            raise
    if rc != 0:
        raise TrialFailed(f"trial {run.number}: nnUNetv2_train exited with status {rc}; log: {log_path}")
    summary = fold / "validation" / "summary.json"
    try:
        value = float(json.loads(summary.read_text())["foreground_mean"]["Dice"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TrialFailed(f"trial {run.number}: no validation result in {summary} ({type(e).__name__}); "
                          f"log: {log_path}") from None
    if not math.isfinite(value):
        raise TrialFailed(f"trial {run.number}: validation Dice is {value} in {summary}; log: {log_path}")
    return value


# ---- a cheap learning curve -------------------------------------------------------------------------------------
CURVE_STATE = "curve_state.json"
CURVE_OPTIMUM = 0.3  # each parameter's best position in its range (0 = low, 1 = high)


def _position(p, v) -> float:
    if p.kind == "categorical":
        return 0.0 if len(p.choices) == 1 else p.choices.index(v) / (len(p.choices) - 1)
    lo, hi, x = float(p.low), float(p.high), float(v)
    if p.log:
        lo, hi, x = math.log(lo), math.log(hi), math.log(x)
    return (x - lo) / (hi - lo)


def curve_final(space, values: dict) -> float:
    """The curve's value at ``max_epochs``: 0.9 at every parameter's optimum (30% into its range), less with the
    mean squared distance from it."""
    d = [(_position(p, values[p.key]) - CURVE_OPTIMUM) ** 2 for p in space.params]
    return 0.9 - 0.8 * sum(d) / len(d)


def curve_value(space, values: dict, epoch: int) -> float:
    """The curve after ``epoch`` epochs: ``final * (1 - exp(-3 epoch / max_epochs))`` plus a deterministic wiggle."""
    final = curve_final(space, values)
    return final * (1 - math.exp(-3 * epoch / space.max_epochs)) + 0.002 * math.sin(epoch)


def curve_objective(space, run: TrialRun, epoch_s: float | None = None) -> float:
    """The learning curve of :func:`curve_value`, one epoch per ``epoch_s`` seconds (``$HYPERA_CURVE_EPOCH_S``,
    default 0), with its epoch saved after each (a killed trial resumes from it)."""
    if epoch_s is None:
        epoch_s = float(os.environ.get("HYPERA_CURVE_EPOCH_S", "0") or 0)
    run.folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run.folder / CONFIG_FILE, space.trial_config(run.values))
    state_path = run.folder / CURVE_STATE
    start = 0
    if state_path.is_file():
        start = int(json.loads(state_path.read_text())["epoch"])
    if os.environ.get("HYPERA_CURVE_FAIL") and run.values and \
            any(str(v) == os.environ["HYPERA_CURVE_FAIL"] for v in run.values.values()):
        (run.folder / LOG_FILE).write_text("curve objective: failing on purpose\n")
        raise TrialFailed(f"trial {run.number}: failed on purpose; log: {run.folder / LOG_FILE}")
    for epoch in range(1, space.max_epochs + 1):  # a resumed trial reports its earlier epochs again
        if epoch > start:
            if epoch_s:
                time.sleep(epoch_s)
            atomic_write_json(state_path, {"epoch": epoch})
        if run.report(epoch, curve_value(space, run.values, epoch)):
            raise Pruned(epoch)
    return curve_final(space, run.values)


OBJECTIVES: dict[str, Callable] = {"nnunet": nnunet_objective, "curve": curve_objective}
