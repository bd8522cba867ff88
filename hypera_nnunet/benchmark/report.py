"""Collect finished folds into ``results.json`` and ``report.md`` (tables, paired statistics, plots, overhead)."""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import replace
from pathlib import Path

import numpy as np

from hypera_nnunet.benchmark.collect import (
    FoldResult,
    epochs_to_reach,
    overhead,
    pseudo_dice_auc,
    read_fold,
    trajectories,
)
from hypera_nnunet.benchmark.plots import plot_learning_curves, plot_trajectories
from hypera_nnunet.benchmark.runner import Job, display_name
from hypera_nnunet.benchmark.stats import POWER_TABLE_N, mean_sd, paired_test, power_table
from hypera_nnunet.benchmark.surface import case_surface_metrics, definition
from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.nnunet.seeding import SEED_ENV
from hypera_nnunet.nnunet.variant_table import hypera_variant_of
from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM

#: "epochs to reach" a share of the baseline's final EMA pseudo Dice (of the run with the same seed and fold)
REACH_SHARE = 0.95
ALPHA, POWER = 0.05, 0.8


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


def surface_for_fold(fold: FoldResult, cache_dir: Path, tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                     backend: str | None = None) -> dict:
    """``{case: {label: {"HD95", "NSD"}}}`` for a fold, cached as JSON in ``cache_dir`` (keyed by tolerance and
    NSD definition: ``backend`` "monai", surfel area, or "voxel", voxel count; None: MONAI when installed)."""
    backend, _ = definition(backend)
    cache = Path(cache_dir) / fold.trainer / f"seed{fold.seed}_fold{fold.fold}_nsd{tolerance_mm:g}mm_{backend}.json"
    summary = fold.folder / "validation" / "summary.json"
    if cache.is_file() and cache.stat().st_mtime >= summary.stat().st_mtime:
        return json.loads(cache.read_text())
    out = {}
    for c in fold.cases:
        pred = Path(c.prediction_file)
        if not pred.is_file():  # nnU-Net records absolute paths; fall back to the fold's own validation folder
            pred = fold.folder / "validation" / pred.name
        out[c.case] = case_surface_metrics(pred, Path(c.reference_file), list(c.dice), tolerance_mm, backend)
    atomic_write_json(cache, _clean(out), indent=None)
    return json.loads(cache.read_text())


def fg_mean(d: dict[str, float | None]) -> float:
    """Mean over the foreground labels' values, ignoring undefined ones (NaN, or None as results.json stores it)."""
    v = [x for x in d.values() if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _seed_text(seed: int | None) -> str:
    return "unseeded" if seed is None else f"{SEED_ENV}={seed}"


def cpu_seconds(commands: list[dict]) -> tuple[dict[str, float], dict[tuple[str, int, int], float]]:
    """CPU seconds (user + system of the training's process tree, from ``wait4``) per run, summed over the
    commands of one run (a run continued with ``--c`` has several): keyed by the run's output folder, and for
    lines written before the folder was recorded, by (name, seed, fold)."""
    by_folder: dict[str, float] = {}
    legacy: dict[tuple[str, int, int], float] = {}
    for r in commands:
        if r.get("cpu_s") is None or "trainer" not in r:
            continue
        if r.get("output_folder"):
            by_folder[r["output_folder"]] = by_folder.get(r["output_folder"], 0.0) + float(r["cpu_s"])
        else:
            key = (display_name(r["trainer"], r.get("variant") or ""), int(r["seed"]), int(r["fold"]))
            legacy[key] = legacy.get(key, 0.0) + float(r["cpu_s"])
    return by_folder, legacy


def build_results(jobs: list[Job], baseline: str, label_names: dict[str, str], out_dir: Path,
                  surface_metrics: bool = True, n_boot: int = 10000, boot_seed: int = 0,
                  tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM,
                  extra_runs: list[tuple[str, str, int, int, Path]] = (), commands: list[dict] = (),
                  surface_backend: str | None = None) -> tuple[dict, dict[str, list[FoldResult]]]:
    """Everything the report shows, from the folds of ``jobs`` that have finished (others are listed as missing).

    ``extra_runs`` are (label, reference trainer, seed, fold, folder) rows such as refined predictions: a folder
    with ``validation/summary.json``; each is compared with the baseline and with its reference trainer (and
    counts as seeded like the run it refines). ``commands`` are the lines of ``runs.jsonl`` (CPU seconds).

    Two runs are paired only when they were seeded alike (the same ``HYPERA_SEED``, or both unseeded, as each
    run's own files say: :func:`~hypera_nnunet.benchmark.collect.read_run_seed`); a comparison with a pair that
    was not is refused as a whole, with one line in ``refused_pairings`` and under its ``paired`` entry.
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
        folds.setdefault(j.name, []).append(read_fold(j.output_folder, j.name, j.fold, j.seed,
                                                      with_agents=hypera_variant_of(j.trainer) is not None))
    for label, ref, seed, fold, folder in extra_runs:
        if label not in trainers:
            trainers.append(label)
            comparisons += [(baseline, label)] + ([(ref, label)] if ref != baseline else [])
        if not (Path(folder) / "validation" / "summary.json").is_file():
            missing.append(f"{label} fold {fold}")
            continue
        source = next((f for f in folds.get(ref, []) if (f.seed, f.fold) == (seed, fold)), None)
        folds.setdefault(label, []).append(replace(read_fold(folder, label, fold, seed, with_logging=False),
                                                   hypera_seed=None if source is None else source.hypera_seed))
    surf: dict[tuple[str, int, int], dict] = {}
    backend, nsd_definition = definition(surface_backend)
    if surface_metrics:
        for t, fs in folds.items():
            for f in fs:
                surf[(t, f.seed, f.fold)] = surface_for_fold(f, Path(out_dir) / "surface", tolerance_mm, backend)
    cpu, cpu_legacy = cpu_seconds(list(commands))
    base_final = {(f.seed, f.fold): (f.curves.get("ema_fg_dice") or [None])[-1] for f in folds.get(baseline, [])}
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
        learning = {f"seed{f.seed}_fold{f.fold}": _learning(f, base_final.get((f.seed, f.fold))) for f in fs
                    if f.curves}
        run_cpu = {f"seed{f.seed}_fold{f.fold}": cpu.get(str(f.folder), cpu_legacy.get((t, f.seed, f.fold)))
                   for f in fs}
        per_trainer[t] = {
            "folds_finished": [f"seed{f.seed}_fold{f.fold}" for f in fs],
            # the HYPERA_SEED each run was seeded with, from its own files (None: not seeded)
            "hypera_seed": {f"seed{f.seed}_fold{f.fold}": f.hypera_seed for f in fs},
            # from each run's hypera/config.json: [] = no agents (nnU-Net's trainer), None = that file is missing
            "agents": {f"seed{f.seed}_fold{f.fold}": None if f.agents is None else list(f.agents) for f in fs},
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
            "learning": learning,
            "learning_summary": _learning_summary(learning),
            "cpu_s": {"per_run": run_cpu, "summary": vars(mean_sd([v for v in run_cpu.values() if v is not None]))},
        }

    paired = {}
    refused_all = []
    for ref, t in comparisons:
        pair_name = t if ref == baseline else f"{t} vs {ref}"
        base_folds = {(f.seed, f.fold): f for f in folds.get(ref, [])}
        cand_folds = {(f.seed, f.fold): f for f in folds.get(t, [])}
        unlike = [k for k in sorted(set(base_folds) & set(cand_folds))
                  if base_folds[k].hypera_seed != cand_folds[k].hypera_seed]
        if unlike:
            k = unlike[0]
            c, b = cand_folds[k], base_folds[k]
            line = (f"not paired: {t} and {ref} were not seeded alike in {len(unlike)} run(s), e.g. "
                    f"seed{k[0]}_fold{k[1]}: {_seed_text(c.hypera_seed)} ({c.folder}) against "
                    f"{_seed_text(b.hypera_seed)} ({b.folder}); compare runs seeded with one {SEED_ENV}, or unseeded "
                    "runs only.")
            refused_all.append(line)
            paired[pair_name] = {"direction": f"{t} minus {ref}", "refused": line,
                           "unlike_runs": [f"seed{a}_fold{b}" for a, b in unlike]}
            continue
        base_rows = {(r["seed"], r["fold"], r["case"]): r for r in per_case.get(ref, [])}
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
        res["per_fold_fg_dice_diff"] = {
            f"seed{s}_fold{f}": fg_mean(cand_folds[(s, f)].mean_dice) - fg_mean(base_folds[(s, f)].mean_dice)
            for (s, f) in matched if (s, f) in base_folds}
        # the unit of replication is the training run (seed x fold); cases within one run share one model
        runs = [(s, f) for (s, f) in matched if (s, f) in base_folds]
        res["run_seeds"] = {f"seed{s}_fold{f}": base_folds[(s, f)].hypera_seed for (s, f) in runs}
        rl = paired_test([fg_mean(base_folds[k].mean_dice) for k in runs],
                         [fg_mean(cand_folds[k].mean_dice) for k in runs], n_boot=n_boot, seed=boot_seed).to_dict()
        res["run_level_fg_dice"] = rl
        res["run_level_pseudo_dice_auc"] = paired_test(
            [_none_nan(pseudo_dice_auc(base_folds[k])) for k in runs],
            [_none_nan(pseudo_dice_auc(cand_folds[k])) for k in runs], n_boot=n_boot, seed=boot_seed).to_dict()
        sd = rl.get("sd_diff")
        res["power"] = {"sd_paired_diff": sd, "alpha": ALPHA, "power": POWER,
                        "min_detectable_difference": power_table(sd if sd is not None else math.nan, POWER_TABLE_N,
                                                                 ALPHA, POWER)}
        paired[pair_name] = res

    return _clean({
        "labels": name, "baseline": baseline, "trainers": trainers, "missing_runs": missing,
        "refused_pairings": refused_all,
        "nsd_tolerance_mm": tolerance_mm, "nsd_definition": nsd_definition if surface_metrics else None,
        "surface_backend": backend if surface_metrics else None,
        "reach_share": REACH_SHARE, "bootstrap": {"n": n_boot, "seed": boot_seed, "ci": 0.95},
        "per_trainer": per_trainer, "paired": paired, "per_case": per_case,
        "curves": {t: {f"seed{f.seed}_fold{f.fold}": {**f.curves, "epoch_s": list(f.epoch_s)} for f in fs}
                   for t, fs in folds.items()},
        "trajectories": {t: {f"seed{f.seed}_fold{f.fold}": trajectories(f) for f in fs}
                         for t, fs in folds.items() if any(f.decisions for f in fs)},
        "decision_summary": {t: {f"seed{f.seed}_fold{f.fold}": _decision_summary(f) for f in fs}
                             for t, fs in folds.items() if any(f.decisions for f in fs)},
    }), folds


def _none_nan(x):
    return math.nan if x is None else x


def _learning(f: FoldResult, baseline_final_ema: float | None = None, threshold: float = 0.1) -> dict:
    """One run's learning: when it left nnU-Net's early all-background phase (the first epoch with pseudo Dice
    above ``threshold``), its final values, the area under its EMA pseudo-Dice curve (mean over epochs) and the
    epochs it took to reach :data:`REACH_SHARE` of ``baseline_final_ema`` (the final EMA pseudo Dice of the
    baseline's run with the same seed and fold; censored when never reached: ``censored`` True, ``epochs_run``
    the E of "> E"; both None without a baseline run)."""
    dice = f.curves.get("mean_fg_dice", [])
    first = next((i for i, d in enumerate(dice) if math.isfinite(d) and d > threshold), None)
    out = {"first_epoch_pseudo_dice_over_0.1": first, "final_pseudo_dice": dice[-1] if dice else None,
           "final_ema_pseudo_dice": (f.curves.get("ema_fg_dice") or [None])[-1],
           "final_train_loss": (f.curves.get("train_losses") or [None])[-1],
           "final_val_loss": (f.curves.get("val_losses") or [None])[-1],
           "pseudo_dice_auc": pseudo_dice_auc(f), "reach_target": None, "epochs_to_reach": None,
           "epochs_run": len(f.curves.get("ema_fg_dice", [])), "censored": None}
    if baseline_final_ema is not None and math.isfinite(baseline_final_ema):
        target = REACH_SHARE * baseline_final_ema
        hit, ran = epochs_to_reach(f, target)
        out.update(reach_target=target, epochs_to_reach=hit, epochs_run=ran, censored=hit is None)
    return out


def _learning_summary(learning: dict[str, dict]) -> dict:
    """Over a trainer's runs: the pseudo-Dice AUC (mean ± sd) and the epochs to reach the target, with the
    censored runs counted (and the largest E of their "> E") rather than given a made-up value."""
    with_target = [v for v in learning.values() if v.get("censored") is not None]
    reached = [v["epochs_to_reach"] for v in with_target if not v["censored"]]
    censored = [v["epochs_run"] for v in with_target if v["censored"]]
    return {"pseudo_dice_auc": vars(mean_sd([_none_nan(v.get("pseudo_dice_auc")) for v in learning.values()])),
            "runs_with_target": len(with_target), "reached": len(reached), "censored": len(censored),
            "censored_at_epochs": max(censored) if censored else None,
            "epochs_to_reach_reached": vars(mean_sd(reached)),
            "epochs_to_reach_median_reached": float(np.median(reached)) if reached else None}


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


def _agents_line(per_run: dict[str, list[str] | None]) -> str:
    """One line for a trainer: its runs grouped by the agents they ran, runs without ``config.json`` named."""
    if not per_run:
        return "no finished runs"
    groups: dict[tuple[str, ...] | None, list[str]] = {}
    for run, agents in per_run.items():
        groups.setdefault(None if agents is None else tuple(agents), []).append(run)
    parts = []
    for agents, runs in groups.items():
        if agents is None:
            parts.append(f"agents unknown: no hypera/config.json in {', '.join(runs)}")
        elif not agents:
            parts.append(f"no agents ({', '.join(runs)})")
        else:
            parts.append(f"{len(agents)} agents: {', '.join(agents)} ({', '.join(runs)})")
    return "; ".join(parts)


POWER_FORMULA = ("smallest true mean difference δ with power 0.8 for the two-sided paired t-test at α = 0.05 with n "
                 "pairs: δ = e·sd, where e solves P(|T| > t_{0.975, n-1}) = 0.8 for T ~ noncentral t(n - 1, e·√n) "
                 "(`scipy.stats.nct`), at the sd of the run-level paired differences measured here")


def _run_level_section(results: dict) -> list[str]:
    """The report's lead: run-level paired differences of mean foreground Dice, and the power table."""
    bs = results["bootstrap"]
    L = ["## Run-level paired differences (the evidence)\n",
         "One value per training run (seed x fold, the unit of replication): the run's mean foreground Dice, "
         "candidate minus baseline, over the (fold, seed) pairs that share their seed. Mean, "
         f"{bs['n']}-sample percentile bootstrap 95% CI (seed {bs['seed']}), the two-sided **sign-flip "
         "permutation test** (primary: exact over all 2^n sign vectors up to n = 16, seeded Monte Carlo above) and "
         "the two-sided paired t-test; Wilcoxon for reference. With n pairs the smallest two-sided sign-flip or "
         "Wilcoxon p is 2/2^n: with 5 pairs 0.0625, so neither can reach p < 0.05 with 5 pairs, however large the "
         "difference (the t-test can).\n",
         "| comparison | pairs | seeds | mean diff | 95% CI | sign-flip p | t-test p | Wilcoxon p | smallest possible "
         "sign-flip p | better / worse runs |", "|---|---|---|---|---|---|---|---|---|---|"]
    power_rows = []
    for pr in results["paired"].values():
        if pr.get("refused"):
            L.append(f"| {pr['direction']} | refused | | | | | | | | |")
            continue
        rl = pr.get("run_level_fg_dice") or {}
        if not rl.get("n"):
            L.append(f"| {pr['direction']} | 0 | | | | | | | | |")
            continue
        seeds = sorted({v for v in (pr.get("run_seeds") or {}).values()}, key=lambda x: (x is None, x))
        seed_txt = ", ".join(_seed_text(x) for x in seeds)
        exact = "" if rl.get("sign_flip_exact", True) else " (Monte Carlo)"
        L.append(f"| {pr['direction']} | {rl['n']} | {seed_txt} | {_f(rl['mean_diff'])} | [{_f(rl['ci_low'])}, "
                 f"{_f(rl['ci_high'])}] | **{_p(rl.get('sign_flip_p'))}**{exact} | {_p(rl.get('t_p'))} | "
                 f"{_p(rl['wilcoxon_p'])} | {2 / 2 ** rl['n']:.3g} | {rl['wins']} / {rl['losses']} |")
        power_rows.append((pr["direction"], pr.get("power") or {}))
    for line in results.get("refused_pairings", []):
        L.append(f"\n**Refused:** {line}")
    if any(pr.get("run_level_fg_dice", {}).get("n", 0) and pr["run_level_fg_dice"]["n"] < 6
           for pr in results["paired"].values() if not pr.get("refused")):
        L.append("\nFewer than 6 pairs: a sign-flip or Wilcoxon p below 0.05 is impossible at this n; read the CI and "
                 "the t-test, and the power table below.")
    L.append("\n### Power: the smallest difference these runs could detect\n")
    L.append(f"{POWER_FORMULA}.\n")
    L += ["| comparison | sd of paired differences | " + " | ".join(f"n = {n}" for n in POWER_TABLE_N) + " |",
          "|" + "---|" * (2 + len(POWER_TABLE_N))]
    for direction, pw in power_rows:
        mdd = pw.get("min_detectable_difference") or {}
        L.append(f"| {direction} | {_f(pw.get('sd_paired_diff'))} | "
                 + " | ".join(_f(mdd.get(str(n), mdd.get(n))) for n in POWER_TABLE_N) + " |")
    return L


def render_markdown(results: dict, meta: dict) -> str:
    """``report.md``: the protocol and commands, then the run-level evidence and power table, then tables, case-level
    statistics (within one run), learning, plots and timing."""
    L = []
    lab = results["labels"]
    L.append(f"# Benchmark: {meta['dataset']} {meta['configuration']}, protocol `{meta['protocol']['name']}`\n")
    L.append(f"Generated {meta['generated_utc']} by `{meta['command']}`.\n")
    L.append(f"Protocol: {meta['protocol']['description']}  ")
    L.append(f"Plans `{meta['protocol']['plans']}`, folds {meta['folds']}, seeds {meta['seeds']}, "
             f"baseline `{results['baseline']}`.\n")
    sd = meta.get("seeding") or {}
    if sd.get("seeded"):
        L.append(f"Seeded: every training of seed s ran with `{sd['variable']}=s`, so the trainers of one (fold, seed) "
                 "share nnU-Net's random numbers (common random numbers); each run's seed as its own files record it "
                 "is `per_trainer.<trainer>.hypera_seed` in `results.json`."
                 + (f" Not seedable (nnU-Net's own, not paired with seeded runs): {sd['unseedable_trainers']}."
                    if sd.get("unseedable_trainers") else "") + "\n")
    elif sd:
        L.append("Unseeded repetitions (`--unseeded`): nnU-Net's streams differ between the runs of one (fold, seed), "
                 "so a pairing by seed is arbitrary.\n")
    if results["missing_runs"]:
        L.append(f"**Not finished (not in the tables):** {', '.join(results['missing_runs'])}.\n")
    L += _run_level_section(results)
    L.append("")
    L.append("## Trainers and the agents that ran\n")
    L.append("Read from each run's `fold_X/hypera/config.json` (written by the HYPERA trainer when it starts), not "
             "from the trainer's name.\n")
    L += [f"- `{t}`: {_agents_line(pt.get('agents') or {})}" for t, pt in results["per_trainer"].items()]
    L.append("")
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
    nsd_def = results.get("nsd_definition") or "not computed (--no-surface)"
    L.append(f"\n## HD95 (mm) and NSD at {results['nsd_tolerance_mm']:g} mm, {nsd_def} (mean ± sd over folds)\n")
    L.append(f"NSD: {nsd_def}. HD95: the larger of the two directed 95th percentiles of the distances between "
             "surface voxels (mask minus its 6-neighbourhood erosion), in mm on the voxel spacing.\n")
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
        if pr.get("refused"):
            L.append(f"**Refused:** {pr['refused']}\n")
            continue
        L.append(f"Matched runs: {', '.join(pr['matched_runs']) or 'none'}; {pr['n_cases']} validation cases.\n")
        rl = pr.get("run_level_fg_dice")
        if rl and rl.get("n"):
            L.append(f"**Run level** (one value per training run = seed x fold, the unit of replication): mean "
                     f"foreground Dice difference {_f(rl['mean_diff'])} over {rl['n']} runs, 95% bootstrap CI "
                     f"[{_f(rl['ci_low'])}, {_f(rl['ci_high'])}], sign-flip p {_p(rl.get('sign_flip_p'))}, paired "
                     f"t-test p {_p(rl.get('t_p'))}, Wilcoxon p {_p(rl['wilcoxon_p'])}, better / worse in "
                     f"{rl['wins']} / {rl['losses']} runs.\n")
        auc = pr.get("run_level_pseudo_dice_auc")
        if auc and auc.get("n"):
            L.append(f"Area under the EMA pseudo-Dice curve (mean over epochs), run level: difference "
                     f"{_f(auc['mean_diff'])} over {auc['n']} runs, 95% CI [{_f(auc['ci_low'])}, "
                     f"{_f(auc['ci_high'])}], sign-flip p {_p(auc.get('sign_flip_p'))}.\n")
        L.append("Case level (within one run): differences per validation case, matched by (seed, fold, case); "
                 f"Wilcoxon signed-rank (two-sided); {bs['n']}-sample bootstrap 95% CI of the mean difference (seed "
                 f"{bs['seed']}). Cases of one run share one trained model, so these p-values ignore run-to-run "
                 "variance and overstate the evidence (two runs of the same procedure can differ at p < 1e-9): "
                 "they describe these runs, not the trainers. Positive Dice/NSD = candidate better; negative HD95 = "
                 f"candidate better. NSD: {nsd_def}.\n")
        L += ["| metric (within one run) | n cases | mean diff | 95% CI | median diff | Wilcoxon p | "
              "better / worse / tied cases |", "|---|---|---|---|---|---|---|"]
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
        share = results.get("reach_share", REACH_SHARE)
        L.append("\n## Learning: area under the pseudo-Dice curve, epochs to a target, CPU time\n")
        L.append("From each run's nnU-Net checkpoint `logging`. **AUC** = the mean of nnU-Net's EMA pseudo Dice "
                 "(`ema_fg_dice`) over the run's epochs. **Epochs to target** = epochs until the run's EMA pseudo "
                 f"Dice first reached {share:g} x the final EMA pseudo Dice of the baseline's run with the same seed "
                 "and fold; a run that never reached it is censored and shown as \"> E\" (E = its epochs), counted, "
                 "and left out of the mean. **CPU s** = user + system seconds of the training's process tree "
                 "(`wait4`, summed over a resumed run's commands; `runs.jsonl`).\n")
        L += ["| trainer | runs | AUC | reached target | censored | epochs to target (reached runs) | CPU s per run |",
              "|---|---|---|---|---|---|---|"]
        for t, pt in results["per_trainer"].items():
            ls = pt.get("learning_summary") or {}
            cens = f"{ls.get('censored', 0)}" + (f" (> {ls['censored_at_epochs']})" if ls.get("censored") else "")
            cpu_all = (pt.get("cpu_s") or {}).get("summary") or {}
            L.append(f"| `{t}` | {len(pt.get('learning') or {})} | {_ms(ls.get('pseudo_dice_auc') or {})} | "
                     f"{ls.get('reached', 0)} / {ls.get('runs_with_target', 0)} | {cens} | "
                     f"{_ms(ls.get('epochs_to_reach_reached') or {}, 1)} | {_ms(cpu_all, 0)} |")
        L.append("\nPer run:\n")
        L += ["| trainer | run | seed | first epoch with pseudo Dice > 0.1 | final pseudo Dice | AUC | "
              "epochs to target | CPU s | final train loss | final val loss |", "|" + "---|" * 10]
        for t, pt in results["per_trainer"].items():
            for k, v in (pt.get("learning") or {}).items():
                if v.get("censored") is None:
                    reach = "n/a"
                else:
                    reach = f"> {v['epochs_run']}" if v["censored"] else str(v["epochs_to_reach"])
                cpu = ((pt.get("cpu_s") or {}).get("per_run") or {}).get(k)
                L.append(f"| `{t}` | {k} | {_seed_text((pt.get('hypera_seed') or {}).get(k))} | "
                         f"{v['first_epoch_pseudo_dice_over_0.1']} | {_f(v['final_pseudo_dice'])} | "
                         f"{_f(v.get('pseudo_dice_auc'))} | {reach} | {_f(cpu, 0)} | {_f(v['final_train_loss'])} | "
                         f"{_f(v['final_val_loss'])} |")
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
