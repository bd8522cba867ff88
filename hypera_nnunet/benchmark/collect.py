"""Read what nnU-Net wrote for each fold: the validation ``summary.json``, the checkpoint's logging (learning
curves, epoch timestamps) and, for HYPERA trainers, ``hypera/decisions.jsonl`` (trajectories, overhead) and
``hypera/config.json`` (the agents that really ran)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from hypera_nnunet.errors import HyperaError

CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")
CURVE_KEYS = ("train_losses", "val_losses", "mean_fg_dice", "ema_fg_dice", "lrs")


@dataclass(frozen=True)
class CaseResult:
    """One validation case: Dice per label (NaN where nnU-Net leaves it undefined) and its two files."""

    case: str
    dice: dict[str, float]
    prediction_file: str
    reference_file: str


@dataclass(frozen=True)
class FoldResult:
    trainer: str
    fold: int
    seed: int
    folder: Path
    cases: tuple[CaseResult, ...]
    mean_dice: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    epoch_s: tuple[float, ...] = ()
    cycle_s: tuple[float, ...] = ()
    decisions: tuple[dict, ...] = ()
    agents: tuple[str, ...] | None = ()  # the agents that ran; () none (nnU-Net's trainer), None: no config.json
    hypera_seed: int | None = None  # the HYPERA_SEED the run was seeded with (None: not seeded), see read_run_seed

    @property
    def labels(self) -> list[str]:
        return sorted(self.mean_dice, key=_label_order)


def _label_order(k: str):
    try:
        return (0, int(k))
    except ValueError:
        return (1, k)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def case_id(path: str) -> str:
    name = Path(path).name
    for ending in (".nii.gz", ".nrrd", ".mha", ".nii", ".png", ".tif", ".tiff", ".gz"):
        if name.endswith(ending):
            return name[: -len(ending)]
    return Path(name).stem


def read_summary(path: Path) -> tuple[tuple[CaseResult, ...], dict[str, float]]:
    """Per-case Dice and per-label mean Dice from one of nnU-Net's ``summary.json`` files."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise HyperaError(f"{path} does not exist: the fold has not finished its validation.") from None
    except json.JSONDecodeError as e:
        raise HyperaError(f"{path} is not valid JSON ({e}); was nnU-Net killed while writing it?") from None
    if "metric_per_case" not in data or "mean" not in data:
        raise HyperaError(f"{path} is not an nnU-Net summary.json: it lacks 'metric_per_case' or 'mean'.")
    cases = []
    for entry in data["metric_per_case"]:
        metrics = entry.get("metrics", {})
        cases.append(CaseResult(case=case_id(entry.get("reference_file") or entry.get("prediction_file", "?")),
                                dice={str(k): _num(v.get("Dice")) for k, v in metrics.items()},
                                prediction_file=str(entry.get("prediction_file", "")),
                                reference_file=str(entry.get("reference_file", ""))))
    mean = {str(k): _num(v.get("Dice")) for k, v in data["mean"].items()}
    return tuple(cases), mean


def read_logging(fold_folder: Path) -> tuple[dict[str, list[float]], tuple[float, ...], tuple[float, ...]]:
    """Learning curves, per-epoch wall times and epoch cycle times from nnU-Net's newest checkpoint.

    An epoch's wall time is nnU-Net's own (end minus start timestamp: training and validation iterations).
    Its cycle time is the start of the next epoch minus its start: it adds what runs between epochs
    (checkpoints, ``progress.png``, a trainer's epoch-start work), which the epoch time leaves out."""
    import torch

    for name in CHECKPOINTS:
        p = Path(fold_folder) / name
        if p.is_file():
            try:
                ck = torch.load(p, map_location="cpu", weights_only=False)
            except Exception as e:  # a truncated file from a killed run
                raise HyperaError(f"{p} could not be read ({type(e).__name__}: {e}).") from None
            lg = ck.get("logging", {})
            n = len(lg.get("epoch_end_timestamps", []))
            curves = {k: [float(v) for v in lg.get(k, [])[:n]] for k in CURVE_KEYS}
            starts, ends = lg.get("epoch_start_timestamps", []), lg.get("epoch_end_timestamps", [])
            return (curves, tuple(float(e - s) for s, e in zip(starts, ends)),
                    tuple(float(b - a) for a, b in zip(starts[:n], starts[1:n])))
    return {}, (), ()


def read_decisions(fold_folder: Path) -> tuple[dict, ...]:
    """``hypera/decisions.jsonl`` (one line per epoch); the last line per epoch wins (a resumed run repeats)."""
    p = Path(fold_folder) / "hypera" / "decisions.jsonl"
    if not p.is_file():
        return ()
    by_epoch: dict[int, dict] = {}
    for i, line in enumerate(p.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            raise HyperaError(f"{p} line {i + 1} is not valid JSON.") from None
        by_epoch[int(rec.get("epoch", i))] = rec
    return tuple(by_epoch[k] for k in sorted(by_epoch))


def read_agents(fold_folder: Path) -> tuple[str, ...] | None:
    """The agents that ran, as the HYPERA trainer recorded them in ``hypera/config.json`` (``"agents"``, in the
    coordinator's order); None when the file does not exist (a run from before it, or one that never started).

    :raises HyperaError: the file is not JSON or has no list of agent names.
    """
    p = Path(fold_folder) / "hypera" / "config.json"
    if not p.is_file():
        return None
    try:
        agents = json.loads(p.read_text()).get("agents")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        raise HyperaError(f"{p} is not a JSON object; was the training killed while writing it?") from None
    if not isinstance(agents, list) or not all(isinstance(a, str) for a in agents):
        raise HyperaError(f"{p} has no list of agent names under 'agents'.")
    return tuple(agents)


def read_run_seed(fold_folder: Path) -> int | None:
    """The ``HYPERA_SEED`` a finished run was seeded with, from what the training itself wrote; None when it was
    not seeded.

    A HYPERA trainer records it in ``hypera/config.json`` (``"hypera_seed"``). A seedable baseline
    (``nnUNetTrainer_<E>epochs_<I>iters``, ``nnUNetTrainerSeedable``) writes no such file, but a seeded one saves
    the generators' states with their seed beside its final checkpoint (``hypera/checkpoint_final.e<N>.pt``,
    ``"rng"``); an unseeded one, or nnU-Net's own trainer, saves none. So: the config file's entry when it has one,
    else the seed in the newest extras of ``checkpoint_final``, else None.

    :raises HyperaError: one of these files is damaged.
    """
    folder = Path(fold_folder)
    cfg = folder / "hypera" / "config.json"
    if cfg.is_file():
        try:
            data = json.loads(cfg.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise HyperaError(f"{cfg} is not a JSON object; was the training killed while writing it?") from None
        if isinstance(data, dict) and "hypera_seed" in data:
            seed = data["hypera_seed"]
            return None if seed is None else int(seed)
    extras = sorted((folder / "hypera").glob("checkpoint_final.e*.pt"))
    if not extras:
        return None
    from hypera_nnunet.common.safe_load import load_torch_file

    state = load_torch_file(extras[-1], "checkpoint extras")
    rng = state.get("rng") if isinstance(state, dict) else None
    return None if not isinstance(rng, dict) or rng.get("seed") is None else int(rng["seed"])


def read_fold(fold_folder: Path, trainer: str, fold: int, seed: int = 0, with_logging: bool = True,
              with_agents: bool = False) -> FoldResult:
    """One finished fold.

    :param with_logging: read the learning curves and epoch times from the checkpoint.
    :param with_agents: a HYPERA trainer's fold: read the agents from ``hypera/config.json`` (else ``agents=()``).
    """
    fold_folder = Path(fold_folder)
    cases, mean = read_summary(fold_folder / "validation" / "summary.json")
    curves, epoch_s, cycle_s = read_logging(fold_folder) if with_logging else ({}, (), ())
    return FoldResult(trainer=trainer, fold=fold, seed=seed, folder=fold_folder, cases=cases, mean_dice=mean,
                      curves=curves, epoch_s=epoch_s, cycle_s=cycle_s, decisions=read_decisions(fold_folder),
                      agents=read_agents(fold_folder) if with_agents else (),
                      hypera_seed=read_run_seed(fold_folder))


def overhead(fold: FoldResult) -> dict | None:
    """The agents' time (``overhead_s.total`` per epoch, timed around their hooks) as a share of epoch time.

    Epochs are matched by index with nnU-Net's epoch timestamps. Returns None for a trainer without agents.
    """
    if not fold.decisions or not fold.epoch_s:
        return None
    per_epoch = []
    for rec in fold.decisions:
        e = int(rec.get("epoch", -1))
        total = (rec.get("overhead_s") or {}).get("total")
        if 0 <= e < len(fold.epoch_s) and total is not None and fold.epoch_s[e] > 0:
            per_epoch.append((float(total), fold.epoch_s[e]))
    if not per_epoch:
        return None
    agents: dict[str, float] = {}
    for rec in fold.decisions:
        for k, v in (rec.get("overhead_s") or {}).items():
            if k != "total":
                agents[k] = agents.get(k, 0.0) + float(v)
    spent = sum(t for t, _ in per_epoch)
    epoch_total = sum(s for _, s in per_epoch)
    return {"epochs": len(per_epoch), "overhead_s": spent, "epoch_s": epoch_total, "share": spent / epoch_total,
            "max_epoch_share": max(t / s for t, s in per_epoch), "by_part_s": agents}


def pseudo_dice_auc(fold: FoldResult) -> float | None:
    """The area under the pseudo-Dice curve per epoch: the mean of nnU-Net's EMA pseudo Dice (``ema_fg_dice``,
    the checkpoint's logging) over the run's epochs (NaN epochs left out); None without a curve."""
    ema = [x for x in fold.curves.get("ema_fg_dice", []) if math.isfinite(x)]
    return float(sum(ema) / len(ema)) if ema else None


def epochs_to_reach(fold: FoldResult, target: float) -> tuple[int | None, int]:
    """``(epochs, epochs run)``: how many epochs the run took until its EMA pseudo Dice first reached ``target``
    (epoch e, counted from 0, is e + 1 epochs); None when it never did (censored at the epochs it ran)."""
    ema = fold.curves.get("ema_fg_dice", [])
    hit = next((i + 1 for i, x in enumerate(ema) if math.isfinite(x) and x >= target), None)
    return hit, len(ema)


def trajectories(fold: FoldResult) -> dict[str, list[float]]:
    """Multiplier of each knob per epoch (1.0 = nnU-Net's own value), from decisions.jsonl."""
    out: dict[str, list[float]] = {}
    for i, rec in enumerate(fold.decisions):
        for k, m in (rec.get("multipliers") or {}).items():
            out.setdefault(k, [math.nan] * i).append(_num(m))
        for k in out:
            if len(out[k]) < i + 1:
                out[k].append(math.nan)
    return out
