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


FINAL_WAIT_S = 600.0


def nnunet_snapshot(space, folder: Path, dst: Path) -> None:
    """Copy what continues this trial (its checkpoint, the generator states beside it, its epochs) to ``dst``: a
    population-based search's checkpoint of the trial. After the last epoch nnU-Net writes no
    ``checkpoint_latest.pth`` (and removes it): the snapshot then waits for ``checkpoint_final.pth``."""
    import shutil

    from hypera_nnunet.nnunet.checkpoint import HYPERA_DIR
    from hypera_nnunet.nnunet.hyperparameters import EPOCHS_FILE, read_epochs

    fold = fold_folder(space, Path(folder) / "nnUNet_results")
    dst.mkdir(parents=True, exist_ok=True)
    epochs = read_epochs(fold / EPOCHS_FILE)
    last = max(epochs, default=-1)
    name = "checkpoint_latest.pth"
    if last >= 0 and last + 1 >= int(epochs[last].get("num_epochs") or 0):
        name = "checkpoint_final.pth"
        deadline = time.monotonic() + FINAL_WAIT_S
        while not (fold / name).is_file() and time.monotonic() < deadline:
            time.sleep(POLL_S)
    if (fold / name).is_file():
        shutil.copy2(fold / name, dst / name)
    if (fold / EPOCHS_FILE).is_file():
        shutil.copy2(fold / EPOCHS_FILE, dst / EPOCHS_FILE)
    stem = name.removesuffix(".pth")
    for extra in sorted((fold / HYPERA_DIR).glob(f"{stem}.e*.pt")):
        (dst / HYPERA_DIR).mkdir(exist_ok=True)
        shutil.copy2(extra, dst / HYPERA_DIR / extra.name)


def nnunet_restore(space, folder: Path, src: Path) -> None:
    """Replace this trial's training state by a snapshot (another trial's, after PBT's exploit step): the next
    ``nnUNetv2_train --c`` continues from the snapshot's checkpoint with this trial's configuration."""
    import shutil

    from hypera_nnunet.nnunet.checkpoint import HYPERA_DIR
    from hypera_nnunet.nnunet.hyperparameters import EPOCHS_FILE

    fold = fold_folder(space, Path(folder) / "nnUNet_results")
    fold.mkdir(parents=True, exist_ok=True)
    for name in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth", EPOCHS_FILE):
        (fold / name).unlink(missing_ok=True)  # --c loads final before latest
    if (fold / HYPERA_DIR).is_dir():
        for old in (fold / HYPERA_DIR).glob("checkpoint_*.e*.pt"):
            old.unlink()
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth", EPOCHS_FILE):
        if (src / name).is_file():
            shutil.copy2(src / name, fold / name)
    for extra in sorted((src / HYPERA_DIR).glob("*.pt")) if (src / HYPERA_DIR).is_dir() else []:
        (fold / HYPERA_DIR).mkdir(exist_ok=True)
        shutil.copy2(extra, fold / HYPERA_DIR / extra.name)


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
    start, lineage = 0, [run.number]
    if state_path.is_file():
        state = json.loads(state_path.read_text())
        start, lineage = int(state["epoch"]), list(state.get("lineage", [])) + [run.number]
        atomic_write_json(state_path, {"epoch": start, "lineage": lineage, "values": run.values})
    if os.environ.get("HYPERA_CURVE_FAIL") and run.values and \
            any(str(v) == os.environ["HYPERA_CURVE_FAIL"] for v in run.values.values()):
        (run.folder / LOG_FILE).write_text("curve objective: failing on purpose\n")
        raise TrialFailed(f"trial {run.number}: failed on purpose; log: {run.folder / LOG_FILE}")
    for epoch in range(1, space.max_epochs + 1):  # a resumed trial reports its earlier epochs again
        if epoch > start:
            if epoch_s:
                time.sleep(epoch_s)
            atomic_write_json(state_path, {"epoch": epoch, "lineage": lineage, "values": run.values})
        if run.report(epoch, curve_value(space, run.values, epoch)):
            raise Pruned(epoch)
    return curve_final(space, run.values)


def curve_snapshot(space, folder: Path, dst: Path) -> None:
    import shutil

    dst.mkdir(parents=True, exist_ok=True)
    if (Path(folder) / CURVE_STATE).is_file():
        shutil.copy2(Path(folder) / CURVE_STATE, dst / CURVE_STATE)


def curve_restore(space, folder: Path, src: Path) -> None:
    import shutil

    Path(folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / CURVE_STATE, Path(folder) / CURVE_STATE)


# ---- Hartmann-6, multi-fidelity -----------------------------------------------------------------------------
# The Hartmann 6-D test function (Hartmann 1972; as tabulated by Dixon & Szegoe 1978 and Surjanovic & Bingham's
# virtual library): minimum -3.32237 at x* = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573).
H6_ALPHA = (1.0, 1.2, 3.0, 3.2)
H6_A = ((10, 3, 17, 3.5, 1.7, 8), (0.05, 10, 17, 0.1, 8, 14), (3, 3.5, 1.7, 10, 17, 8), (17, 8, 0.05, 10, 0.1, 14))
H6_P = ((0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886), (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
        (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650), (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381))
H6_MIN = -3.32237
H6_BIAS = 0.15   # low fidelity's bias, towards x1 large: early epochs rank configurations differently
H6_NOISE = 0.03  # sd of the noise at the lowest fidelity; 0.1 of it at the full fidelity


def hartmann6(x) -> float:
    """The Hartmann-6 function on [0, 1]^6 (to be minimised)."""
    return -sum(a * math.exp(-sum(A[j] * (x[j] - P[j]) ** 2 for j in range(6)))
                for a, A, P in zip(H6_ALPHA, H6_A, H6_P))


def hartmann_score(x, fidelity: float, noise_u: float = 0.0) -> float:
    """The maximised score at ``fidelity`` in (0, 1]: ``-f(x) / 3.32237`` (1 at the optimum) at fidelity 1, with a
    bias ``H6_BIAS (1 - fidelity)(x1 - 0.5)`` and noise ``H6_NOISE (1 - 0.9 fidelity) noise_u`` (a standard normal
    draw given by the caller)."""
    return (-hartmann6(x) / -H6_MIN + H6_BIAS * (1 - fidelity) * (x[0] - 0.5)
            + H6_NOISE * (1 - 0.9 * fidelity) * noise_u)


def hartmann_objective(space, run: TrialRun) -> float:
    """Hartmann-6 over the space's first six parameters (each in [0, 1]); epoch e of max_epochs is fidelity
    e / max_epochs; the noise is seeded by the space's seed and the values, so a repeat is reproducible. Returns the
    noise-free full-fidelity score (its regret is 1 - score)."""
    import numpy as np

    keys = [p.key for p in space.params][:6]
    x = [float(run.values[k]) for k in keys]
    if len(x) != 6:
        raise TrialFailed(f"trial {run.number}: the hartmann objective needs six parameters, got {len(x)}")
    seed = abs(hash((space.seed, tuple(round(v, 12) for v in x)))) % 2**32
    rng = np.random.default_rng(seed)
    for epoch in range(1, space.max_epochs + 1):
        if run.report(epoch, hartmann_score(x, epoch / space.max_epochs, float(rng.standard_normal()))):
            raise Pruned(epoch)
    return hartmann_score(x, 1.0)


OBJECTIVES: dict[str, Callable] = {"nnunet": nnunet_objective, "curve": curve_objective,
                                   "hartmann": hartmann_objective}
#: objective -> (snapshot, restore): the state a population-based search copies from trial to trial
SNAPSHOTS: dict[str, tuple[Callable, Callable]] = {"nnunet": (nnunet_snapshot, nnunet_restore),
                                                   "curve": (curve_snapshot, curve_restore)}
