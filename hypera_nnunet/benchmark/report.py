"""Collect finished folds into ``results.json`` and ``report.md`` (tables, paired statistics, plots, overhead)."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import numpy as np

from hypera_nnunet.benchmark.collect import FoldResult, overhead, read_fold, trajectories
from hypera_nnunet.benchmark.plots import plot_learning_curves, plot_trajectories
from hypera_nnunet.benchmark.runner import Job
from hypera_nnunet.benchmark.stats import mean_sd, paired_test
from hypera_nnunet.benchmark.surface import case_surface_metrics

NSD_TOLERANCE_MM = 1.0


def _clean(x):
    """JSON-safe: NaN/inf become null, numpy scalars become Python numbers, tuples/paths become lists/strings."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def atomic_write(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def surface_for_fold(fold: FoldResult, cache_dir: Path, tolerance_mm: float = NSD_TOLERANCE_MM) -> dict:
    """``{case: {label: {"HD95", "NSD"}}}`` for a fold, cached as JSON in ``cache_dir`` (keyed by tolerance)."""
    cache = Path(cache_dir) / fold.trainer / f"seed{fold.seed}_fold{fold.fold}_nsd{tolerance_mm:g}mm.json"
    summary = fold.folder / "validation" / "summary.json"
    if cache.is_file() and cache.stat().st_mtime >= summary.stat().st_mtime:
        return json.loads(cache.read_text())
    out = {}
    for c in fold.cases:
        pred = Path(c.prediction_file)
        if not pred.is_file():  # nnU-Net records absolute paths; fall back to the fold's own validation folder
            pred = fold.folder / "validation" / pred.name
        out[c.case] = case_surface_metrics(pred, Path(c.reference_file), list(c.dice), tolerance_mm)
    atomic_write(cache, json.dumps(_clean(out)))
    return json.loads(cache.read_text())


def fg_mean(d: dict[str, float | None]) -> float:
    """Mean over the foreground labels' values, ignoring undefined ones (NaN, or None as results.json stores it)."""
    v = [x for x in d.values() if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def build_results(jobs: list[Job], baseline: str, label_names: dict[str, str], out_dir: Path,
                  surface_metrics: bool = True, n_boot: int = 10000, boot_seed: int = 0,
                  tolerance_mm: float = NSD_TOLERANCE_MM,
                  extra_runs: list[tuple[str, str, int, int, Path]] = ()) -> tuple[dict, dict[str, list[FoldResult]]]:
    """Everything the report shows, from the folds of ``jobs`` that have finished (others are listed as missing).

    ``extra_runs`` are (label, reference trainer, seed, fold, folder) rows such as refined predictions: a folder
    with ``validation/summary.json``; each is compared with the baseline and with its reference trainer.
    """
    folds: dict[str, list[FoldResult]] = {}
    missing: list[str] = []
    trainers: list[str] = []
    comparisons: list[tuple[str, str]] = []
    for j in jobs:
        if j.name not in trainers:
            trainers.append(j.name)
            if j.name != baseline:
                comparisons.append((baseline, j.name))
        if j.state() != "done":
            missing.append(j.label)
            continue
        folds.setdefault(j.name, []).append(read_fold(j.output_folder, j.name, j.fold, j.seed))
    for label, ref, seed, fold, folder in extra_runs:
        if label not in trainers:
            trainers.append(label)
            comparisons += [(baseline, label)] + ([(ref, label)] if ref != baseline else [])
        if not (Path(folder) / "validation" / "summary.json").is_file():
            missing.append(f"{label} fold {fold}")
            continue
        folds.setdefault(label, []).append(read_fold(folder, label, fold, seed, with_logging=False))
    surf: dict[tuple[str, int, int], dict] = {}
    if surface_metrics:
        for t, fs in folds.items():
            for f in fs:
                surf[(t, f.seed, f.fold)] = surface_for_fold(f, Path(out_dir) / "surface", tolerance_mm)
    labels = sorted({lab for fs in folds.values() for f in fs for lab in f.mean_dice}, key=lambda k: (len(k), k))
    name = {lab: label_names.get(lab, lab) for lab in labels}

    per_trainer = {}
    per_case = {}
    for t in trainers:
        fs = folds.get(t, [])
        rows = []
        for f in fs:
            s = surf.get((t, f.seed, f.fold), {})
            for c in f.cases:
                rows.append({"seed": f.seed, "fold": f.fold, "case": c.case, "dice": c.dice, "fg_dice": fg_mean(c.dice),
                             "hd95": {lab: s.get(c.case, {}).get(lab, {}).get("HD95", math.nan) for lab in c.dice},
                             "nsd": {lab: s.get(c.case, {}).get(lab, {}).get("NSD", math.nan) for lab in c.dice}})
        per_case[t] = rows

        def fold_metric(f, key, lab, rows=rows):
            vals = [r[key][lab] for r in rows if r["fold"] == f.fold and r["seed"] == f.seed]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            return float(np.mean(vals)) if vals else math.nan

        epoch_s = [s for f in fs for s in f.epoch_s]
        cycle_s = [s for f in fs for s in f.cycle_s]
        ov = {f"seed{f.seed}_fold{f.fold}": overhead(f) for f in fs}
        ov = {k: v for k, v in ov.items() if v is not None}
        ov_total = None
        if ov:
            spent = sum(v["overhead_s"] for v in ov.values())
            ep = sum(v["epoch_s"] for v in ov.values())
            n_ep = sum(v["epochs"] for v in ov.values())
            parts: dict[str, float] = {}
            for v in ov.values():
                for k, x in v["by_part_s"].items():
                    parts[k] = parts.get(k, 0.0) + x
            ov_total = {"overhead_s": spent, "epoch_s": ep, "share": spent / ep,
                        "max_epoch_share": max(v["max_epoch_share"] for v in ov.values()),
                        "ms_per_epoch_by_part": {k: 1000 * x / n_ep for k, x in sorted(parts.items())}}
        per_trainer[t] = {
            "folds_finished": [f"seed{f.seed}_fold{f.fold}" for f in fs],
            "per_fold_dice": {f"seed{f.seed}_fold{f.fold}": f.mean_dice for f in fs},
            "dice": {lab: vars(mean_sd([f.mean_dice.get(lab, math.nan) for f in fs])) for lab in labels},
            "fg_dice": vars(mean_sd([fg_mean(f.mean_dice) for f in fs])),
            "hd95": {lab: vars(mean_sd([fold_metric(f, "hd95", lab) for f in fs])) for lab in labels},
            "nsd": {lab: vars(mean_sd([fold_metric(f, "nsd", lab) for f in fs])) for lab in labels},
            "hd95_undefined_cases": {lab: sum(1 for r in rows if not _finite(r["hd95"].get(lab))) for lab in labels},
            "epoch_s": {"median": float(np.median(epoch_s)) if epoch_s else None,
                        "mean": float(np.mean(epoch_s)) if epoch_s else None, "n": len(epoch_s)},
            "cycle_s": {"median": float(np.median(cycle_s)) if cycle_s else None,
                        "mean": float(np.mean(cycle_s)) if cycle_s else None, "n": len(cycle_s)},
            "overhead": {"per_fold": ov, "all": ov_total},
            "learning": {f"seed{f.seed}_fold{f.fold}": _learning(f) for f in fs if f.curves},
        }

    paired = {}
    for ref, t in comparisons:
        base_rows = {(r["seed"], r["fold"], r["case"]): r for r in per_case.get(ref, [])}
        base_folds = {(f.seed, f.fold): f for f in folds.get(ref, [])}
        cand_rows = [r for r in per_case.get(t, []) if (r["seed"], r["fold"], r["case"]) in base_rows]
        pairs = [(base_rows[(r["seed"], r["fold"], r["case"])], r) for r in cand_rows]
        matched = sorted({(r["seed"], r["fold"]) for r in cand_rows})
        res = {"matched_runs": [f"seed{s}_fold{f}" for s, f in matched], "n_cases": len(pairs),
               "direction": f"{t} minus {ref}", "dice": {}, "hd95": {}, "nsd": {}}
        for lab in labels:
            for key in ("dice", "hd95", "nsd"):
                b = [p[0][key].get(lab, math.nan) for p in pairs]
                c = [p[1][key].get(lab, math.nan) for p in pairs]
                res[key][lab] = paired_test(_nan(b), _nan(c), n_boot=n_boot, seed=boot_seed).to_dict()
        res["fg_dice"] = paired_test([p[0]["fg_dice"] for p in pairs], [p[1]["fg_dice"] for p in pairs],
                                     n_boot=n_boot, seed=boot_seed).to_dict()
        cand_folds = {(f.seed, f.fold): f for f in folds.get(t, [])}
        res["per_fold_fg_dice_diff"] = {
            f"seed{s}_fold{f}": fg_mean(cand_folds[(s, f)].mean_dice) - fg_mean(base_folds[(s, f)].mean_dice)
            for (s, f) in matched if (s, f) in base_folds}
        # the unit of replication is the training run (seed x fold); cases within one run share one model
        runs = [(s, f) for (s, f) in matched if (s, f) in base_folds]
        res["run_level_fg_dice"] = paired_test([fg_mean(base_folds[k].mean_dice) for k in runs],
                                               [fg_mean(cand_folds[k].mean_dice) for k in runs],
                                               n_boot=n_boot, seed=boot_seed).to_dict()
        paired[t if ref == baseline else f"{t} vs {ref}"] = res

    return _clean({
        "labels": name, "baseline": baseline, "trainers": trainers, "missing_runs": missing,
        "nsd_tolerance_mm": tolerance_mm, "bootstrap": {"n": n_boot, "seed": boot_seed, "ci": 0.95},
        "per_trainer": per_trainer, "paired": paired, "per_case": per_case,
        "curves": {t: {f"seed{f.seed}_fold{f.fold}": {**f.curves, "epoch_s": list(f.epoch_s)} for f in fs}
                   for t, fs in folds.items()},
        "trajectories": {t: {f"seed{f.seed}_fold{f.fold}": trajectories(f) for f in fs}
                         for t, fs in folds.items() if any(f.decisions for f in fs)},
        "decision_summary": {t: {f"seed{f.seed}_fold{f.fold}": _decision_summary(f) for f in fs}
                             for t, fs in folds.items() if any(f.decisions for f in fs)},
    }), folds


def _learning(f: FoldResult, threshold: float = 0.1) -> dict:
    """When the fold left nnU-Net's early all-background phase: the first epoch with pseudo Dice above ``threshold``."""
    dice = f.curves.get("mean_fg_dice", [])
    first = next((i for i, d in enumerate(dice) if math.isfinite(d) and d > threshold), None)
    return {"first_epoch_pseudo_dice_over_0.1": first, "final_pseudo_dice": dice[-1] if dice else None,
            "final_train_loss": (f.curves.get("train_losses") or [None])[-1],
            "final_val_loss": (f.curves.get("val_losses") or [None])[-1]}


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def _nan(xs):
    return [x if _finite(x) else math.nan for x in xs]


def _decision_summary(f: FoldResult) -> dict:
    recs = f.decisions
    return {"epochs": len(recs), "rollbacks": sum(1 for r in recs if r.get("rollback")),
            "applied_epochs": sum(1 for r in recs if r.get("applied")),
            "phases": sorted({str(r.get("phase")) for r in recs}),
            "final_multipliers": (recs[-1].get("multipliers") if recs else {}),
            "mean_reward": {a: float(np.mean([r["rewards"][a] for r in recs if a in (r.get("rewards") or {})]))
                            for a in sorted({a for r in recs for a in (r.get("rewards") or {})})}}


def write_plots(folds: dict[str, list[FoldResult]], out_dir: Path) -> list[str]:
    out = []
    p = plot_learning_curves(folds, Path(out_dir) / "learning_curves.png")
    if p:
        out.append(p.name)
    for t, fs in folds.items():
        p = plot_trajectories(fs, Path(out_dir) / f"trajectories_{t}.png", t)
        if p:
            out.append(p.name)
    return out


def environment() -> dict:
    from importlib.metadata import version

    import torch

    return {"nnunetv2": version("nnunetv2"), "torch": torch.__version__, "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "machine": platform.machine()}


def _f(x, d=4):
    return "n/a" if x is None else f"{x:.{d}f}"


def _ms(m: dict, d=4) -> str:
    if not m or m.get("n", 0) == 0 or m.get("mean") is None:
        return "n/a"
    sd = "" if m.get("sd") is None else f" ± {m['sd']:.{d}f}"
    return f"{m['mean']:.{d}f}{sd} (n={m['n']})"


def _p(x):
    return "n/a" if x is None else (f"{x:.2e}" if x < 1e-3 else f"{x:.4f}")


def render_markdown(results: dict, meta: dict) -> str:
    """``report.md``: the protocol and commands, then tables, paired statistics, plots and timing."""
    L = []
    lab = results["labels"]
    L.append(f"# Benchmark: {meta['dataset']} {meta['configuration']}, protocol `{meta['protocol']['name']}`\n")
    L.append(f"Generated {meta['generated_utc']} by `{meta['command']}`.\n")
    L.append(f"Protocol: {meta['protocol']['description']}  ")
    L.append(f"Plans `{meta['protocol']['plans']}`, folds {meta['folds']}, seeds {meta['seeds']}, "
             f"baseline `{results['baseline']}`.\n")
    if results["missing_runs"]:
        L.append(f"**Not finished (not in the tables):** {', '.join(results['missing_runs'])}.\n")
    L.append("## Validation Dice per class (mean ± sd over folds of the per-fold mean)\n")
    hdr = "| trainer | folds | " + " | ".join(f"Dice {lab[k]}" for k in lab) + " | Dice fg mean |"
    L += [hdr, "|" + "---|" * (3 + len(lab))]
    for t, pt in results["per_trainer"].items():
        L.append(f"| `{t}` | {len(pt['folds_finished'])} | " + " | ".join(_ms(pt["dice"][k]) for k in lab)
                 + f" | {_ms(pt['fg_dice'])} |")
    per_fold = [(t, k, d) for t, pt in results["per_trainer"].items() for k, d in pt["per_fold_dice"].items()]
    if per_fold:
        L.append("\nPer fold (nnU-Net's validation mean Dice):\n")
        L += ["| trainer | run | " + " | ".join(f"Dice {lab[k]}" for k in lab) + " |", "|" + "---|" * (2 + len(lab))]
        for t, k, d in per_fold:
            L.append(f"| `{t}` | {k} | " + " | ".join(_f(d.get(x)) for x in lab) + " |")
    L.append(f"\n## HD95 (mm) and NSD at {results['nsd_tolerance_mm']:g} mm (mean ± sd over folds)\n")
    hdr = "| trainer | " + " | ".join(f"HD95 {lab[k]}" for k in lab) + " | " + \
        " | ".join(f"NSD {lab[k]}" for k in lab) + " |"
    L += [hdr, "|" + "---|" * (1 + 2 * len(lab))]
    for t, pt in results["per_trainer"].items():
        L.append(f"| `{t}` | " + " | ".join(_ms(pt["hd95"][k], 2) for k in lab) + " | "
                 + " | ".join(_ms(pt["nsd"][k]) for k in lab) + " |")
    und = {t: pt["hd95_undefined_cases"] for t, pt in results["per_trainer"].items()
           if any(pt["hd95_undefined_cases"].values())}
    if und:
        L.append(f"\nCases where HD95 is undefined (a label empty in prediction or reference), excluded: {und}.")
    bs = results["bootstrap"]
    for pr in results["paired"].values():
        L.append(f"\n## Paired: {pr['direction']}\n")
        L.append(f"Matched runs: {', '.join(pr['matched_runs']) or 'none'}; {pr['n_cases']} validation cases.\n")
        rl = pr.get("run_level_fg_dice")
        if rl and rl.get("n"):
            L.append(f"**Run level** (one value per training run = seed x fold, the unit of replication): mean "
                     f"foreground Dice difference {_f(rl['mean_diff'])} over {rl['n']} runs, 95% bootstrap CI "
                     f"[{_f(rl['ci_low'])}, {_f(rl['ci_high'])}], Wilcoxon p {_p(rl['wilcoxon_p'])}, better / worse "
                     f"in {rl['wins']} / {rl['losses']} runs (with {rl['n']} runs the smallest possible two-sided "
                     f"Wilcoxon p is {2 / 2 ** rl['n']:.3g}).\n")
        L.append("Case level, within runs: differences per case; Wilcoxon signed-rank (two-sided); "
                 f"{bs['n']}-sample bootstrap 95% CI of the mean difference (seed {bs['seed']}). Cases of one run "
                 "share one trained model, so these p-values ignore run-to-run variance and overstate the evidence "
                 "(two runs of the same procedure can differ at p < 1e-9). Positive Dice/NSD = candidate better; "
                 "negative HD95 = candidate better.\n")
        L += ["| metric | n | mean diff | 95% CI | median diff | Wilcoxon p | better / worse / tied cases |",
              "|---|---|---|---|---|---|---|"]
        rows = [(f"Dice {lab[k]}", pr["dice"][k], 4) for k in lab] + [("Dice fg mean", pr["fg_dice"], 4)]
        rows += [(f"HD95 {lab[k]} (mm)", pr["hd95"][k], 3) for k in lab] + [(f"NSD {lab[k]}", pr["nsd"][k], 4)
                                                                            for k in lab]
        for name, r, d in rows:
            hd = name.startswith("HD95")
            better, worse = (r["losses"], r["wins"]) if hd else (r["wins"], r["losses"])
            L.append(f"| {name} | {r['n']} | {_f(r['mean_diff'], d)} | [{_f(r['ci_low'], d)}, {_f(r['ci_high'], d)}] | "
                     f"{_f(r['median_diff'], d)} | {_p(r['wilcoxon_p'])} | {better} / {worse} / {r['ties']} |")
        if pr["per_fold_fg_dice_diff"]:
            L.append("\nPer-fold difference of the fold's mean foreground Dice: "
                     + ", ".join(f"{k}: {v:+.4f}" for k, v in pr["per_fold_fg_dice_diff"].items()) + ".")
    L.append("\n## Time per epoch and the agents' overhead\n")
    L.append("Epoch wall time from nnU-Net's checkpoint timestamps (training + validation iterations); the cycle "
             "time is from one epoch's start to the next's, so it adds checkpoints, plots and epoch-start work. "
             "Agents' "
             "overhead: the sum of `overhead_s.total` in `hypera/decisions.jsonl` divided by the epoch wall time "
             "of the same epochs. It times everything HYPERA adds: the agents (acting and SAC updates), the "
             "coordinator (rewards, rollback snapshot, state fingerprints, decision line) and, from runs after "
             "2026-11-24, the trainer's side (`trainer_*`: gradient norms, state signals, multiplier log, panel "
             "plot).\n")
    L += ["| trainer | epochs | median epoch s | mean epoch s | mean cycle s | agents' overhead s | "
          "share of epoch time | max share in one epoch |", "|---|---|---|---|---|---|---|---|"]
    for t, pt in results["per_trainer"].items():
        e, ov = pt["epoch_s"], pt["overhead"]["all"]
        cy = pt.get("cycle_s", {}).get("mean")
        L.append(f"| `{t}` | {e['n']} | {_f(e['median'], 2)} | {_f(e['mean'], 2)} | {_f(cy, 2)} | "
                 + (f"{ov['overhead_s']:.2f} | {100 * ov['share']:.3f}% | {100 * ov['max_epoch_share']:.3f}% |"
                    if ov else "– | – | – |"))
    by_part = {t: pt["overhead"]["all"].get("ms_per_epoch_by_part") for t, pt in results["per_trainer"].items()
               if pt["overhead"]["all"]}
    if any(by_part.values()):
        L.append("\nOverhead by part, ms per epoch (mean over the trainer's epochs; `dataloader_rebuild` is also "
                 "inside `coordinator`):\n")
        for t, parts in by_part.items():
            if parts:
                L.append(f"- `{t}`: " + ", ".join(f"{k} {v:.1f}" for k, v in parts.items()))
    if any(pt.get("learning") for pt in results["per_trainer"].values()):
        L.append("\n## Learning per fold\n")
        L += ["| trainer | fold | first epoch with pseudo Dice > 0.1 | final pseudo Dice | final train loss | "
              "final val loss |", "|---|---|---|---|---|---|"]
        for t, pt in results["per_trainer"].items():
            for k, v in (pt.get("learning") or {}).items():
                L.append(f"| `{t}` | {k} | {v['first_epoch_pseudo_dice_over_0.1']} | {_f(v['final_pseudo_dice'])} | "
                         f"{_f(v['final_train_loss'])} | {_f(v['final_val_loss'])} |")
    runs = meta.get("runs") or []
    if runs:
        L.append("\n## Training commands run by this harness\n")
        L += ["| job | state at start | exit | wall s | CPU s | load avg (mean/max) |", "|---|---|---|---|---|---|"]
        for r in runs:
            L.append(f"| {r['job']} | {r.get('state_at_start')} | {r.get('returncode')} | {r.get('wall_s')} | "
                     f"{r.get('cpu_s')} | {r.get('load_avg_mean')}/{r.get('load_avg_max')} |")
    if results.get("decision_summary"):
        L.append("\n## Agents' decisions\n")
        for t, per in results["decision_summary"].items():
            for k, s in per.items():
                fm = ", ".join(f"{a}={v:.3g}" for a, v in (s["final_multipliers"] or {}).items())
                L.append(f"- `{t}` {k}: {s['epochs']} epochs, applied in {s['applied_epochs']}, "
                         f"{s['rollbacks']} rollbacks; final multipliers: {fm}")
    if meta.get("plots"):
        L.append("\n## Plots\n")
        for p in meta["plots"]:
            L.append(f"![{p}]({p})")
    L.append(f"\nEnvironment: {meta['environment']}. Raw numbers: `results.json` (per case, per fold, curves).")
    return "\n".join(L) + "\n"
