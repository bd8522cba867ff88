"""Run ``nnUNetv2_train`` for every (seed, fold, trainer), resumably, and show progress.

A fold is *done* when ``fold_X/validation/summary.json`` exists (nnU-Net writes it last); a fold with a
checkpoint but no summary is continued with ``--c`` (nnU-Net then finishes training and validates); any
other fold starts fresh. Every finished command appends one line to ``<out>/runs.jsonl``: the command,
its exit code, wall time and the machine's load average while it ran (the machine may be shared).

Each training runs in a process group of its own that ends with the harness, however the harness ends
(:mod:`.children`).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hypera_nnunet.benchmark import children
from hypera_nnunet.common.atomic_io import dumps
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.seeding import SEED_ENV

SEED_DIR = "hypera_seeds"  # unseeded repetitions (``--unseeded``, and every run before seeding existed)
SEEDED_DIR = "hypera_seeded"  # runs seeded with HYPERA_SEED=<seed>
VARIANT_DIR = "hypera_variants"


def display_name(trainer: str, variant: str = "") -> str:
    """``trainer``, or ``trainer[variant]`` for a trainer run with a HYPERA config file labelled ``variant``."""
    return f"{trainer}[{variant}]" if variant else trainer


@dataclass(frozen=True)
class Job:
    """One nnU-Net training: ``nnUNetv2_train <dataset> <configuration> <fold> -tr <trainer> -p <plans>``."""

    dataset: str
    configuration: str
    fold: int
    trainer: str
    plans: str
    seed: int
    results_root: Path
    variant: str = ""  # a HYPERA_CONFIG file's label ("" = the trainer's own configuration)

    @property
    def name(self) -> str:
        """The name in reports: the trainer, with ``[variant]`` when it runs a configuration file."""
        return display_name(self.trainer, self.variant)

    @property
    def output_folder(self) -> Path:
        """``$nnUNet_results/<dataset>/<trainer>__<plans>__<configuration>/fold_<f>`` (nnU-Net's layout)."""
        return (Path(self.results_root) / self.dataset / f"{self.trainer}__{self.plans}__{self.configuration}"
                / f"fold_{self.fold}")

    @property
    def label(self) -> str:
        return f"{self.name} fold {self.fold}" + (f" seed {self.seed}" if self.seed else "")

    def state(self) -> str:
        """``done``, ``resume`` (a checkpoint exists: continue with --c) or ``new``."""
        out = self.output_folder
        if (out / "validation" / "summary.json").is_file():
            return "done"
        if any((out / f).is_file() for f in ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")):
            return "resume"
        return "new"

    def command(self, device: str, npz: bool) -> list[str]:
        cmd = ["nnUNetv2_train", self.dataset, self.configuration, str(self.fold), "-tr", self.trainer,
               "-p", self.plans, "-device", device]
        if npz:
            cmd.append("--npz")
        if self.state() == "resume":
            cmd.append("--c")
        return cmd


def results_root_for_seed(results: Path, seed: int, variant: str = "", seeded: bool = False) -> Path:
    """Where the runs of one seed live, with nnU-Net's layout inside.

    Seeded runs (``HYPERA_SEED=<seed>``, the default) live in ``nnUNet_results/hypera_seeded/seed<s>`` for every
    seed, 0 included, so they never share a folder with unseeded runs (which the harness would skip as done).
    Unseeded repetitions keep the earlier layout: seed 0 is nnU-Net's own ``nnUNet_results``, repetition ``s``
    lives in ``nnUNet_results/hypera_seeds/seed<s>``.

    A configuration variant (one trainer run with a ``HYPERA_CONFIG`` file) gets the same layout below
    ``nnUNet_results/hypera_variants/<variant>``: nnU-Net names result folders by trainer, so two configurations
    of one trainer need folders of their own."""
    root = Path(results) / VARIANT_DIR / variant if variant else Path(results)
    if seeded:
        return root / SEEDED_DIR / f"seed{seed}"
    return root if seed == 0 else root / SEED_DIR / f"seed{seed}"


def last_epoch(output_folder: Path) -> int | None:
    """The last ``Epoch N`` that nnU-Net's newest training log in ``output_folder`` announced."""
    logs = sorted(Path(output_folder).glob("training_log_*.txt"), key=lambda p: p.stat().st_mtime)
    if not logs:
        return None
    try:
        with open(logs[-1], "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 20000))
            tail = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = re.findall(r"Epoch (\d+)\s*$", tail, flags=re.M)
    return int(found[-1]) if found else None


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class _Running:
    job: Job
    cmd: list[str]
    child: children.Child
    log: TextIO
    start: float
    state: str
    loads: list[float]
    shown_epoch: int | None = None
    env_seed: str | None = None


def _append_line(path: Path, line: dict) -> None:
    """One JSON line appended and synced (a line is the unit: a torn last line is all a crash can leave)."""
    with open(path, "a") as f:
        f.write(dumps(line, indent=None) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_jobs(jobs: list[Job], device: str, env_for: Callable[[Job], dict[str, str]], out_dir: Path,
             concurrency: int = 1, npz: bool = False, epochs_total: int | None = None, poll_s: float = 10.0,
             stream: TextIO | None = None, dry_run: bool = False, exe_dir: Path | None = None,
             stop_grace_s: float = 60.0) -> list[dict]:
    """Run the jobs that are not done, ``concurrency`` at a time, and return one record per job.

    A failed training is recorded (exit code and the tail of its log) and the others go on; the caller decides
    what a failure means. Interrupted (an exception, SIGTERM turned into ``SystemExit``, Ctrl-C), it stops the
    running trainings' process groups before it returns; they continue with ``--c`` next time.

    :param env_for: the subprocess environment of a job.
    :param exe_dir: where ``nnUNetv2_train`` is looked up first (default: next to this Python; then ``PATH``).
    :param stop_grace_s: seconds a stopped training gets between SIGTERM and SIGKILL.
    """
    stream = stream or sys.stdout
    out_dir = Path(out_dir)
    (out_dir / "logs").mkdir(parents=True, exist_ok=True)
    runs_path = out_dir / "runs.jsonl"
    records: list[dict] = []
    pending = []
    for j in jobs:
        st = j.state()
        if st == "done":
            print(f"[skip] {j.label}: {j.output_folder / 'validation' / 'summary.json'} exists", file=stream)
            records.append({"job": j.label, "state": "done", "skipped": True})
        else:
            pending.append(j)
    total = len(pending)
    if dry_run:
        for j in pending:
            print(f"[dry-run] {' '.join(j.command(device, npz))}", file=stream)
        return records
    running: list[_Running] = []
    finished = 0
    exe_dir = Path(exe_dir) if exe_dir else Path(sys.executable).parent
    try:
        while pending or running:
            while pending and len(running) < concurrency:
                j = pending.pop(0)
                cmd = j.command(device, npz)
                state = j.state()
                log_path = out_dir / "logs" / f"{j.name}__fold{j.fold}__seed{j.seed}.log"
                log = open(log_path, "a")
                log.write(f"\n$ {' '.join(cmd)}  # {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
                log.flush()
                exe = exe_dir / cmd[0]
                argv = [str(exe) if exe.is_file() else cmd[0], *cmd[1:]]
                env = env_for(j)
                try:
                    child = children.start(argv, env, log)
                except FileNotFoundError:
                    log.close()
                    raise HyperaError(f"`{cmd[0]}` was not found next to {sys.executable} or on PATH; is nnunetv2 "
                                      "installed in this environment?") from None
                running.append(_Running(j, cmd, child, log, time.time(), state, [], env_seed=env.get(SEED_ENV)))
                verb = "continue (--c)" if state == "resume" else "start"
                print(f"[{finished}/{total}] {verb} {j.label}: {' '.join(cmd)}", file=stream, flush=True)
            time.sleep(poll_s)
            load = _loadavg()
            for r in list(running):
                if load is not None:
                    r.loads.append(load)
                ep = last_epoch(r.job.output_folder)
                if ep is not None and ep != r.shown_epoch:
                    r.shown_epoch = ep
                    of = f"/{epochs_total}" if epochs_total else ""
                    print(f"[{finished}/{total}] {r.job.label}: epoch {ep}{of}  ({time.time() - r.start:.0f} s)",
                          file=stream, flush=True)
                rc = r.child.reap()
                if rc is None:
                    continue
                cpu_s = r.child.cpu_s
                r.log.close()
                running.remove(r)
                finished += 1
                wall = time.time() - r.start
                rec = {"job": r.job.label, "trainer": r.job.trainer, "variant": r.job.variant, "fold": r.job.fold,
                       "seed": r.job.seed,
                       "command": " ".join(r.cmd), "state_at_start": r.state, "returncode": rc,
                       "wall_s": round(wall, 1),
                       "start_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r.start)),
                       "cpu_s": None if cpu_s is None else round(cpu_s, 1),
                       "load_avg_mean": round(sum(r.loads) / len(r.loads), 2) if r.loads else None,
                       "load_avg_max": max(r.loads) if r.loads else None, "done": r.job.state() == "done",
                       SEED_ENV: r.env_seed, "output_folder": str(r.job.output_folder)}
                _append_line(runs_path, rec)
                records.append(rec)
                status = "done" if rec["done"] else f"FAILED (exit {rc}; log {out_dir / 'logs'})"
                print(f"[{finished}/{total}] {r.job.label}: {status} in {wall:.0f} s", file=stream, flush=True)
    finally:  # interrupted (SIGTERM, Ctrl-C, --time-limit): stop our trainings, they continue with --c next time
        _stop_all(running, stream, stop_grace_s)
    return records


def _stop_all(running: list[_Running], stream: TextIO, grace_s: float) -> None:
    """SIGTERM to every running training's group at once, then wait for each (SIGKILL after ``grace_s``)."""
    for r in running:
        if r.child.reap() is None:
            print(f"stopping {r.job.label} (pid {r.child.pid} and its process group)", file=stream, flush=True)
            r.child.signal_group(signal.SIGTERM)
    for r in running:
        r.child.stop(grace_s)
        r.log.close()
