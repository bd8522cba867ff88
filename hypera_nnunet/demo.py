"""``hypera-nnunet demo``: the whole loop on synthetic data, on the CPU, in a few minutes.

It writes a small synthetic 3D dataset in nnU-Net's raw format, plans and preprocesses it with
nnU-Net, writes reduced CPU plans, trains ``nnUNetTrainer`` and ``HyperaTrainer`` on fold 0 at the
same short budget, predicts the held-out test cases, evaluates them with ``nnUNetv2_evaluate_folder``
and prints a side-by-side table (Dice per class, wall time: one short run on synthetic data, not evidence; the
evidence is in ``docs/benchmarks.md``), what the agents changed (switches as on/off), and writes the HYPERA
run's HTML report (``fold_0/hypera/report.html``; without plotly it says how to get it).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.data import CPU_ENV, SYNTHETIC_LABELS, nnunet_exe, run_nnunet, write_synthetic_dataset
from hypera_nnunet.env import nnunet_env
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.budget import EPOCHS, ITERS
from hypera_nnunet.nnunet.plans import CPU_PLANS_NAME, write_reduced_plans

DATASET_ID = 990
DATASET_NAME = f"Dataset{DATASET_ID:03d}_HyperaSynthetic"
MARKER = ".hypera_demo"


@dataclass(frozen=True)
class DemoSettings:
    """Where and how long. ``epochs``/``iterations`` must be a registered budget (see ``budget.py``)."""

    folder: Path = Path("hypera_demo")
    epochs: int = 10
    iterations: int = 10
    seed: int = 0
    n_train: int = 20
    n_test: int = 4


def _say(msg: str) -> None:
    print(msg, flush=True)


def _prepare_folder(folder: Path) -> None:
    if folder.exists() and any(folder.iterdir()) and not (folder / MARKER).exists():
        raise HyperaError(f"{folder} exists and is not a hypera-nnunet demo folder; choose another with --dir.")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / MARKER).write_text("written by hypera-nnunet demo; safe to delete\n")


def _train_streaming(cmd: list[str], env: dict, label: str, log: Path, epochs: int) -> float:
    """Run nnUNetv2_train, showing one line per epoch; return wall seconds."""
    t0 = time.perf_counter()
    epoch, dice = None, None
    with open(log, "w") as logf:
        proc = subprocess.Popen([nnunet_exe(cmd[0]), *cmd[1:]], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            if m := re.search(r"Epoch (\d+)$", line.strip()):
                epoch = int(m.group(1))
            elif "Pseudo dice" in line:
                dice = line.split("Pseudo dice", 1)[1].strip()
            elif "Epoch time" in line and epoch is not None:
                secs = line.split("Epoch time:", 1)[1].strip()
                dice_txt = re.sub(r"np\.float32\(([^)]*)\)", r"\1", dice or "")
                _say(f"    {label}: epoch {epoch + 1}/{epochs}  pseudo-Dice {dice_txt}  ({secs})")
            elif "Mean Validation Dice" in line:
                _say(f"    {label}: validation (fold 0) mean Dice {line.split(':', 1)[-1].strip().split()[-1]}")
        rc = proc.wait()
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise HyperaError(f"`{' '.join(cmd)}` failed (exit {rc}); see {log}:\n{tail}")
    return time.perf_counter() - t0


def _epoch_ranges(epochs: list[int]) -> str:
    """``[2, 3, 4, 7]`` -> ``"2-4, 7"``."""
    out: list[list[int]] = []
    for e in epochs:
        if out and e == out[-1][1] + 1:
            out[-1][1] = e
        else:
            out.append([e, e])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in out)


def _agent_changes(fold_dir: Path) -> list[str]:
    """One line per knob: its multipliers of nnU-Net's value, or for a switch (``nesterov``) where it was on/off;
    then rollbacks and the agents' time."""
    path = fold_dir / "hypera" / "decisions.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    if not lines:
        return []
    out = []
    for knob in lines[0]["multipliers"]:
        vals = [(rec.get("values") or {}).get(knob) for rec in lines]
        if any(isinstance(v, bool) for v in vals):  # a switch: on/off, not a multiplier
            off = [rec["epoch"] for rec, v in zip(lines, vals) if v is False]
            if not off:
                out.append(f"{knob} (switch): on in all {len(lines)} epochs")
            elif len(off) == len(lines):
                out.append(f"{knob} (switch): off in all {len(lines)} epochs")
            else:
                out.append(f"{knob} (switch): off in epochs {_epoch_ranges(off)}, on in the others")
            continue
        ms = [rec["multipliers"][knob] for rec in lines]
        if max(abs(math.log(m)) for m in ms) < 1e-9:
            out.append(f"{knob}: unchanged (nnU-Net's)")
        else:
            out.append(f"{knob}: x{min(ms):.3g} .. x{max(ms):.3g}, last x{ms[-1]:.3g}")
    rb = sum(1 for rec in lines if rec.get("rollback"))
    overhead = sum(rec["overhead_s"]["total"] for rec in lines)
    out.append(f"rollbacks: {rb}; agents' time: {overhead:.2f} s over {len(lines)} epochs")
    return out


def results_table(rows: dict, trainers: list[str], settings: DemoSettings) -> list[str]:
    """The printed table, preceded by what it is (one short run on synthetic data, not evidence)."""
    names = {v: k for k, v in SYNTHETIC_LABELS.items() if v}
    out = [f"One short run on synthetic data (fold 0, {settings.epochs} epochs x {settings.iterations} iterations, "
           f"{settings.n_test} test volumes): it shows the loop working; it is not evidence about HYPERA.",
           "For the evidence (paired runs over folds and seeds, with their statistics) see docs/benchmarks.md.", ""]
    header = f"{'trainer':34s}" + "".join(f"{'Dice ' + names[c]:>16s}" for c in sorted(names)) + \
        f"{'mean':>8s}{'train [s]':>11s}{'predict [s]':>13s}"
    out += [header, "-" * len(header)]
    for tr in trainers:
        r = rows[tr]
        dice = [r["dice"].get(c, float("nan")) for c in sorted(names)]
        out.append(f"{tr:34s}" + "".join(f"{d:16.4f}" for d in dice) + f"{sum(dice) / len(dice):8.4f}"
                   f"{r['train_s']:11.1f}{r['predict_s']:13.1f}")
    return out


def write_run_report(fold_dir: Path) -> tuple[str | None, str]:
    """The fold's HTML report: ``(path or None, the line to print)``; without plotly, how to get it instead."""
    import importlib.util

    if importlib.util.find_spec("plotly") is None:
        return None, (f"HTML report not written: plotly is not installed. Install it with "
                      f"pip install 'hypera-nnunet[report]', then run: hypera-nnunet report {fold_dir}")
    from hypera_nnunet.report.run_report import write_run_report as write

    try:
        path = write(fold_dir)
    except HyperaError as e:
        return None, f"HTML report not written: {e}"
    return str(path), f"HTML report of the {fold_dir.parent.name.split('__')[0]} run (open it in a browser): {path}"


def run_demo(settings: DemoSettings) -> dict:
    if settings.epochs not in EPOCHS or settings.iterations not in ITERS:
        raise HyperaError(f"--epochs must be one of {list(EPOCHS)} and --iters one of {list(ITERS)} "
                          f"(registered trainer budgets); got {settings.epochs} and {settings.iterations}.")
    folder = settings.folder.resolve()
    _prepare_folder(folder)
    raw, pre, res = folder / "nnUNet_raw", folder / "nnUNet_preprocessed", folder / "nnUNet_results"
    env = nnunet_env({"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(pre), "nnUNet_results": str(res),
                      **CPU_ENV})
    logs = folder / "logs"
    logs.mkdir()
    t_start = time.perf_counter()

    _say(f"[1/5] Writing a synthetic dataset ({settings.n_train} training + {settings.n_test} test volumes) "
         f"to {raw / DATASET_NAME}")
    ds = write_synthetic_dataset(raw, DATASET_ID, "HyperaSynthetic", n_train=settings.n_train,
                                 n_test=settings.n_test, seed=settings.seed)

    _say("[2/5] nnUNetv2_plan_and_preprocess (3d_fullres), then reduced CPU plans (batch 2, features / 4)")
    run_nnunet(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1",
                "--verify_dataset_integrity"], env={**env, "nnUNet_n_proc_DA": "1"}, log=logs / "plan.log")
    write_reduced_plans(pre / DATASET_NAME)

    budget = f"_{settings.epochs}epochs_{settings.iterations}iters"
    trainers = [f"nnUNetTrainer{budget}", f"HyperaTrainer{budget}"]
    rows = {}
    for i, tr in enumerate(trainers):
        _say(f"[3/5] Training {tr} on fold 0 ({settings.epochs} epochs x {settings.iterations} iterations, CPU)"
             if i == 0 else f"      Training {tr} at the same budget")
        wall = _train_streaming(["nnUNetv2_train", str(DATASET_ID), "3d_fullres", "0", "-tr", tr, "-p",
                                 CPU_PLANS_NAME, "-device", "cpu"], env, tr, logs / f"train_{tr}.log",
                                settings.epochs)
        rows[tr] = {"train_s": wall}

    _say("[4/5] Predicting the test volumes (nnUNetv2_predict) and evaluating (nnUNetv2_evaluate_folder)")
    for tr in trainers:
        out = folder / "predictions" / tr
        t0 = time.perf_counter()
        run_nnunet(["nnUNetv2_predict", "-i", str(ds / "imagesTs"), "-o", str(out), "-d", str(DATASET_ID), "-c",
                    "3d_fullres", "-tr", tr, "-p", CPU_PLANS_NAME, "-f", "0", "-device", "cpu", "-npp", "0",
                    "-nps", "0", "--disable_progress_bar"], env=env, log=logs / f"predict_{tr}.log")
        rows[tr]["predict_s"] = time.perf_counter() - t0
        model = res / DATASET_NAME / f"{tr}__{CPU_PLANS_NAME}__3d_fullres"
        run_nnunet(["nnUNetv2_evaluate_folder", str(ds / "labelsTs"), str(out), "-djfile",
                    str(model / "dataset.json"), "-pfile", str(model / "plans.json")], env=env,
                   log=logs / f"evaluate_{tr}.log")
        summary = json.loads((out / "summary.json").read_text())
        rows[tr]["dice"] = {int(k): v["Dice"] for k, v in summary["mean"].items()}
        rows[tr]["changes"] = _agent_changes(model / "fold_0")

    _say("[5/5] Results on the held-out synthetic test volumes (nnU-Net's summary.json)\n")
    for line in results_table(rows, trainers, settings):
        _say(line)
    _say(f"\nWhat the agents changed ({trainers[1]}; multipliers of nnU-Net's own values, switches on/off):")
    for line in rows[trainers[1]]["changes"]:
        _say(f"  {line}")
    fold = res / DATASET_NAME / f"{trainers[1]}__{CPU_PLANS_NAME}__3d_fullres" / "fold_0"
    report, line = write_run_report(fold)
    _say(f"\n{line}")
    _say(f"\nDone in {time.perf_counter() - t_start:.0f} s. Everything is in {folder} "
         f"(decisions: {res / DATASET_NAME}/{trainers[1]}__{CPU_PLANS_NAME}__3d_fullres/fold_0/hypera/decisions.jsonl)")
    result = {"trainers": rows, "folder": str(folder), "report": report}
    atomic_write_json(folder / "demo_results.json", result)
    return result


if __name__ == "__main__":
    sys.exit(run_demo(DemoSettings()) and 0)
