"""Where a training's wall time goes, run by run, from the files a training leaves (issue 13, item 5).

For every fold folder it sums the parts of each epoch in ``fold_X/epochs.jsonl`` (``phases``, written by
:class:`hypera_nnunet.nnunet.timing.PhaseTiming`), adds HYPERA's own timed seconds from ``hypera/decisions.jsonl``
(``overhead_s``, already inside the parts: the gradient-norm hook in ``train_step``, the coordinator in ``rest``),
and takes the run's wall and CPU seconds from the harness's ``runs.jsonl``. What the epochs do not hold (start-up,
the final checkpoint, nnU-Net's final validation) is ``outside_epochs = run wall - sum of epoch walls``. Runs are
grouped by label; the JSON has every run and each label's means, and the difference of each label from the first.

    F=Dataset004_Hippocampus/nnUNetTrainer_50epochs_25iters__hyperaCPU2dB16Plans__2d/fold_0
    python benchmarks/wall_time.py --runs bench/cpu_v3_compare/runs.jsonl --run nnUNetTrainer=$R/seed0/$F \
        --run HyperaTrainer_Shadow=... --out docs/bench/cpu_v3_wall_time.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

PARTS = ("train_data", "train_step", "val_data", "val_step", "checkpoint", "plot", "rest", "wall")


def _lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text().splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def run_row(fold_dir: Path, commands: dict[str, dict]) -> dict:
    """One run: its epochs' parts summed, HYPERA's timed seconds, and the harness's wall and CPU seconds."""
    epochs = {int(x["epoch"]): x for x in _lines(fold_dir / "epochs.jsonl") if x.get("phases")}
    if not epochs:
        raise SystemExit(f"{fold_dir / 'epochs.jsonl'}: no epoch has 'phases' (a run from before PhaseTiming?)")
    parts = {k: round(sum(e["phases"][k] for e in epochs.values()), 2) for k in PARTS}
    hypera = {}
    for d in _lines(fold_dir / "hypera" / "decisions.jsonl"):
        for k, v in (d.get("overhead_s") or {}).items():
            hypera[k] = hypera.get(k, 0.0) + float(v)
    row = {"folder": str(fold_dir), "epochs": len(epochs), "parts_s": parts,
           "hypera_timed_s": {k: round(v, 2) for k, v in sorted(hypera.items())}}
    cmd = commands.get(str(fold_dir.resolve()))
    if cmd is not None:
        row.update(run_wall_s=cmd["wall_s"], cpu_s=cmd.get("cpu_s"), load_avg_mean=cmd.get("load_avg_mean"),
                   load_avg_max=cmd.get("load_avg_max"),
                   outside_epochs_s=round(cmd["wall_s"] - parts["wall"], 2))
    return row


def _mean(rows: list[dict], get) -> float | None:
    vals = [v for v in (get(r) for r in rows) if v is not None]
    return round(statistics.fmean(vals), 2) if vals else None


def summarise(rows: dict[str, list[dict]], max_load: float | None = None) -> dict:
    """Each label's means over its runs whose load average stayed at most ``max_load`` (others: ``excluded``)."""
    out = {}
    for label, all_rs in rows.items():
        rs = [r for r in all_rs if max_load is None or (r.get("load_avg_max") or 0) <= max_load]
        m = {f"{k}_s": _mean(rs, lambda r, k=k: r["parts_s"][k]) for k in PARTS}
        m["run_wall_s"] = _mean(rs, lambda r: r.get("run_wall_s"))
        m["outside_epochs_s"] = _mean(rs, lambda r: r.get("outside_epochs_s"))
        m["cpu_s"] = _mean(rs, lambda r: r.get("cpu_s"))
        m["hypera_timed_total_s"] = _mean(rs, lambda r: r["hypera_timed_s"].get("total"))
        out[label] = {"n_runs": len(rs), "excluded": [r["folder"] for r in all_rs if r not in rs], "mean": m}
    labels = list(out)
    for label in labels[1:]:
        base, cand = out[labels[0]]["mean"], out[label]["mean"]
        out[label]["minus_" + labels[0]] = {
            k: None if base[k] is None or cand[k] is None else round(cand[k] - base[k], 2) for k in base}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=FOLD_DIR",
                    help="a fold folder of a finished training, under a label (repeat; the first label is the base)")
    ap.add_argument("--runs", action="append", type=Path, default=[], help="the harness's runs.jsonl (repeatable)")
    ap.add_argument("--max-load", type=float, default=None,
                    help="leave runs whose load average rose above this out of the means (something else ran)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    commands = {}
    for p in a.runs:
        for r in _lines(p):
            if r.get("output_folder") and r.get("done", True):
                commands[str(Path(r["output_folder"]).resolve())] = r
    rows: dict[str, list[dict]] = {}
    for spec in a.run:
        label, sep, folder = spec.partition("=")
        if not sep:
            raise SystemExit(f"--run {spec!r}: expected LABEL=FOLD_DIR")
        rows.setdefault(label, []).append(run_row(Path(folder), commands))
    result = {"runs": rows, "max_load": a.max_load, "summary": summarise(rows, a.max_load)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["summary"], indent=1))


if __name__ == "__main__":
    main()
