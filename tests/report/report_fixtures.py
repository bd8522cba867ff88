"""Small report inputs written by hand in the real formats: a fold's results folder (6 epochs of
``hypera/decisions.jsonl`` with a phase change and a rollback, ``config.json``, a training log, a validation
summary) and a benchmark's ``results.json`` (two trainers, three paired runs)."""

from __future__ import annotations

import json
from pathlib import Path

AGENTS = ("learning_rate", "loss", "optimization")
KNOBS = ("lr", "ce_dice_balance", "nesterov")
PHASES = ("explore", "explore", "explore", "exploit", "exploit", "exploit")
ROLLBACK_EPOCH = 4
NESTEROV_OFF = (2, 3)
LR_MULT = (1.0, 1.2, 1.35, 1.1, 1.1, 0.9)
REWARD_LR = (0.0, 0.1, 0.2, -0.1, -0.5, 0.3)
EPOCH_S = (2.0, 2.5, 2.0, 2.0, 4.0, 2.0)
OVERHEAD = {"coordinator": 0.01, "learning_rate": 0.002, "loss": 0.001, "optimization": 0.001,
            "dataloader_rebuild": 0.0005}


def decision(e: int) -> dict:
    nesterov = e not in NESTEROV_OFF
    parts = dict(OVERHEAD)
    parts["total"] = round(sum(v for k, v in parts.items() if k != "dataloader_rebuild"), 6)
    return {
        "epoch": e, "fingerprint_start": f"{e:016x}", "phase": PHASES[e],
        "actions": {"learning_rate": [0.1], "loss": [0.0], "optimization": [0.0, -0.5 if not nesterov else 0.0]},
        "values": {"lr": 0.01 * LR_MULT[e], "ce_dice_balance": [0.9, 1.1], "nesterov": nesterov},
        "multipliers": {"lr": LR_MULT[e], "ce_dice_balance": 0.9, "nesterov": 1.0 if nesterov else 0.5},
        "rewards": {"learning_rate": REWARD_LR[e], "loss": 0.05 * e, "optimization": -0.01},
        "trust": {"learning_rate": 0.5 + 0.05 * e, "loss": 0.5, "optimization": 0.5 - 0.02 * e},
        "rollback": "pseudo-Dice EMA dropped by 0.2" if e == ROLLBACK_EPOCH else None, "applied": True,
        "learning": {}, "state": {"progress": e / 6, "train_loss": 1.0 - 0.1 * e, "val_loss": 0.9 - 0.1 * e,
                                  "pseudo_dice": float("nan") if e == ROLLBACK_EPOCH else 0.1 * e,
                                  "ema_dice": 0.05 * e, "grad_norm_mean": 1.0, "grad_norm_max": 2.0,
                                  "weight_norm": 30.0},
        "next_values": {}, "agent_state": {}, "fingerprint_end": f"{e + 1:016x}", "overhead_s": parts,
    }


def write_fold(folder: Path, torn_line: bool = True) -> Path:
    """A HYPERA fold folder of 6 epochs; with ``torn_line`` a half line at the end, as a kill leaves it."""
    (folder / "hypera").mkdir(parents=True)
    text = "".join(json.dumps(decision(e)) + "\n" for e in range(6))
    (folder / "hypera" / "decisions.jsonl").write_text(text + ('{"epoch": 6, "val' if torn_line else ""))
    (folder / "hypera" / "config.json").write_text(json.dumps(
        {"trainer": "HyperaTrainer_6epochs", "variant": "HyperaTrainer", "agents": list(AGENTS), "config": {}}))
    log = ["", "2026-01-01 10:00:00.000001: HYPERA agents: ['learning_rate', 'loss', 'optimization']"]
    for e in range(6):
        log += [f"2026-01-01 10:00:{10 * e:02d}.000000: ", f"2026-01-01 10:00:{10 * e:02d}.000001: Epoch {e}",
                f"2026-01-01 10:00:{10 * e + 5:02d}.000000: Epoch time: {EPOCH_S[e]:.2f} s"]
        if e == 3:
            log.append("2026-01-01 10:00:35.000002: HYPERA: epoch 3: exploration phase explore -> exploit")
        if e == ROLLBACK_EPOCH:
            log.append("2026-01-01 10:00:45.000002: HYPERA: epoch 4: rolled back to the last good epoch "
                       "(pseudo-Dice EMA dropped by 0.2)")
    (folder / "training_log_2026_1_1_10_00_00.txt").write_text("\n".join(log) + "\n")
    (folder / "validation").mkdir()
    (folder / "validation" / "summary.json").write_text(json.dumps(
        {"mean": {"1": {"Dice": 0.5}, "2": {"Dice": 0.25}}, "metric_per_case": []}))
    return folder


BASE, CAND = "nnUNetTrainer_6epochs", "HyperaTrainer_6epochs"
RUNS = ("seed0_fold0", "seed0_fold1", "seed1_fold0")
RUN_DIFFS = (0.01, -0.02, 0.04)  # mean 0.01, sd exactly 0.03


def _test(n, mean, lo, hi, p, wins, losses, ties=0):
    return {"n": n, "mean_diff": mean, "median_diff": mean, "ci_low": lo, "ci_high": hi, "wilcoxon_stat": 1.0,
            "wilcoxon_p": p, "wins": wins, "losses": losses, "ties": ties}


def results() -> dict:
    labels = {"1": "Anterior", "2": "Posterior"}
    per_trainer = {}
    for t, shift in ((BASE, 0.0), (CAND, 0.01)):
        per_trainer[t] = {
            "folds_finished": list(RUNS), "agents": {r: ([] if t == BASE else list(AGENTS)) for r in RUNS},
            "per_fold_dice": {r: {"1": 0.5 + shift, "2": 0.4 + shift} for r in RUNS},
            "dice": {"1": {"mean": 0.5 + shift, "sd": 0.02, "n": 3}, "2": {"mean": 0.4 + shift, "sd": 0.03, "n": 3}},
            "fg_dice": {"mean": 0.45 + shift, "sd": 0.02, "n": 3},
            "hd95": {k: {"mean": 5.0, "sd": 1.0, "n": 3} for k in labels},
            "nsd": {k: {"mean": 0.7, "sd": 0.1, "n": 3} for k in labels},
            "hd95_undefined_cases": {"1": 0, "2": 0},
            "epoch_s": {"median": 2.0, "mean": 2.1, "n": 18}, "cycle_s": {"median": 2.2, "mean": 2.3, "n": 15},
            "overhead": {"per_fold": {}, "all": None if t == BASE else {
                "overhead_s": 0.3, "epoch_s": 37.8, "share": 0.3 / 37.8, "max_epoch_share": 0.01,
                "ms_per_epoch_by_part": {"coordinator": 10.0}}},
            "learning": {}}
    case = {k: _test(9, 0.01, -0.01, 0.03, 0.2, 5, 4) for k in labels}
    paired = {CAND: {
        "matched_runs": list(RUNS), "n_cases": 9, "direction": f"{CAND} minus {BASE}",
        "dice": case, "hd95": {k: _test(9, -0.5, -1.0, 0.1, 0.3, 3, 6) for k in labels},
        "nsd": {k: _test(9, 0.02, 0.0, 0.04, 0.1, 6, 3) for k in labels},
        "fg_dice": _test(9, 0.01, -0.01, 0.03, 0.25, 5, 4),
        "per_fold_fg_dice_diff": dict(zip(RUNS, RUN_DIFFS)),
        "run_level_fg_dice": _test(3, 0.01, -0.02, 0.04, 0.75, 2, 1)}}
    curves = {t: {r: {"train_losses": [1.0, 0.8, 0.6], "val_losses": [0.9, 0.7, 0.6],
                      "mean_fg_dice": [0.1, 0.3 + i / 10, 0.5], "ema_fg_dice": [0.1, 0.2, 0.3], "lrs": [0.01] * 3,
                      "epoch_s": [2.0] * 3} for i, r in enumerate(RUNS)} for t in (BASE, CAND)}
    return {"meta": {"dataset": "Dataset904_Hippocampus", "configuration": "3d_fullres",
                     "protocol": {"name": "cpu-v2"}, "command": "hypera-nnunet benchmark -d 4",
                     "generated_utc": "2026-01-01T00:00:00Z"},
            "labels": labels, "baseline": BASE, "trainers": [BASE, CAND], "missing_runs": [],
            "nsd_tolerance_mm": 1.0, "bootstrap": {"n": 1000, "seed": 0, "ci": 0.95}, "per_trainer": per_trainer,
            "paired": paired, "per_case": {}, "curves": curves, "trajectories": {}, "decision_summary": {}, "test": {}}


def write_benchmark(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results(), indent=1))
    return folder
