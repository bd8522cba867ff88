"""Evidence for the segmentation agents on Hippocampus cross-validation predictions (issues 4 and 17).

Held-out-fold protocol, for each fold k of nnU-Net's 5-fold cross-validation (``fold_k/validation`` of
``nnUNetv2_train --npz``):

1. nnU-Net's own ``nnUNetv2_determine_postprocessing`` on the other four folds (their label maps merged into
   one folder, as nnU-Net does for ``crossval_results_folds_*``);
2. ``hypera-nnunet refine fit --policy per-case --postprocessing <that postprocessing.pkl>`` on the same four
   folds: the refinement starts from nnU-Net's postprocessing (``--from-raw``: from the raw predictions, as
   before issue 17). The per-case fit runs the global fit first; the global refiner is the per-case refiner
   without its policies;
3. all applied to fold k (``nnUNetv2_apply_postprocessing``; ``refine apply`` with either refiner), which none
   has seen. Four methods per case: raw, nnU-Net's postprocessing, the global fit, the per-case policy.

Every case is thus scored once, by a refinement fitted without it. Metrics per case and class, against
``$nnUNet_preprocessed/<dataset>/gt_segmentations`` (what nnU-Net's cross-validation uses): Dice, HD95 and
NSD at ``--nsd-tolerance`` mm (default :data:`hypera_nnunet.refine.metrics.DEFAULT_NSD_TOLERANCE_MM`), on the
voxel spacing (definitions: :mod:`hypera_nnunet.refine.metrics`). Paired differences per case and class with
:func:`hypera_nnunet.benchmark.stats.paired_test` (seeded bootstrap CI, Wilcoxon signed-rank). The raw Dice is
checked against nnU-Net's own ``fold_k/validation/summary.json``.

    python benchmarks/refine_hippocampus.py \
        --model $nnUNet_results/Dataset004_Hippocampus/<trainer>__<plans>__3d_fullres \
        --work /tmp/refine_bench --json docs/refinement.json --name my_run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hypera_nnunet.benchmark.stats import paired_test
from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.refine import metrics
from hypera_nnunet.refine.io import DatasetInfo, list_cases, read_seg

METHODS = ("raw", "nnunet_pp", "global", "per_case")
REFINED = ("global", "per_case")


def sh(cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run a command, append its output to ``log``; return its wall time. Raise on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def exe(name: str) -> str:
    local = Path(sys.executable).parent / name
    return str(local) if local.is_file() else name


def time_nnunet_pp(pkl: Path, folder: Path, info: DatasetInfo, scratch: Path) -> list[float]:
    """In-process seconds per case of nnU-Net's postprocessing (read, apply, write), for the runtime column.

    ``pkl`` is the ``postprocessing.pkl`` that nnU-Net's ``determine_postprocessing`` wrote in this run; it is
    nnU-Net's format, a pickle, and is loaded as nnU-Net loads it."""
    from nnunetv2.postprocessing.remove_connected_components import load_postprocess_save

    fns, kwargs = pickle.loads(pkl.read_bytes())
    rw = info.reader_writer()
    scratch.mkdir(parents=True, exist_ok=True)
    out = []
    for c in list_cases(folder, info.file_ending):
        t0 = time.perf_counter()
        load_postprocess_save(str(folder / f"{c}{info.file_ending}"), str(scratch / f"{c}{info.file_ending}"), rw,
                              fns, kwargs)
        out.append(time.perf_counter() - t0)
    shutil.rmtree(scratch)
    return out


def score_folder(folder: Path, gt: Path, info: DatasetInfo, cases: list[str], tol: float) -> dict:
    rw = info.reader_writer()
    res = {}
    for c in cases:
        seg, props = read_seg(rw, folder / f"{c}{info.file_ending}", c, "prediction")
        ref, _ = read_seg(rw, gt / f"{c}{info.file_ending}", c, "reference")
        spacing = tuple(float(s) for s in props["spacing"])
        res[c] = {str(k): v for k, v in metrics.class_metrics(seg, ref, info.foreground, spacing, tol).items()}
    return res


def paired(baseline: list[float], candidate: list[float], seed: int) -> dict:
    """``candidate - baseline`` over the cases where both are defined: :func:`paired_test` as JSON."""
    return paired_test(baseline, candidate, seed=seed).to_dict()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="nnU-Net model folder with fold_*/validation (--npz)")
    ap.add_argument("--gt", type=Path,
                    help="reference folder (default: $nnUNet_preprocessed/<dataset>/gt_segmentations)")
    ap.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the per-fold outputs")
    ap.add_argument("--json", type=Path, required=True,
                    help="raw results (JSON): the run is stored under runs.<--name>, other runs are kept")
    ap.add_argument("--name", required=True, help="name of this run in the JSON file")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--max-search-cases", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nsd-tolerance", type=float, default=metrics.DEFAULT_NSD_TOLERANCE_MM)
    ap.add_argument("--from-raw", action="store_true",
                    help="fit the refinement on the raw predictions (the behaviour before --postprocessing existed)")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. where the folds came from)")
    args = ap.parse_args(argv)

    model = args.model.resolve()
    info = DatasetInfo.load(model / "dataset.json", model / "plans.json")
    dataset = model.parent.name
    gt = args.gt or Path(os.environ["nnUNet_preprocessed"]) / dataset / "gt_segmentations"
    val = {k: model / f"fold_{k}" / "validation" for k in args.folds}
    for v in val.values():
        if not sorted(v.glob("*.npz")):
            raise SystemExit(f"{v} has no .npz: train with --npz (or nnUNetv2_train ... --val --npz)")
    work = args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    log = work / "commands.log"
    env = dict(os.environ, nnUNet_def_n_proc="1", OMP_NUM_THREADS="1")
    hypera = [sys.executable, "-m", "hypera_nnunet.refine.cli", "refine"]
    out: dict = {"protocol": __doc__.split("\n\n")[1].strip(), "model": str(model), "reference": str(gt),
                 "nsd_tolerance_mm": args.nsd_tolerance, "note": args.note,
                 "search": {"population": args.population, "iterations": args.iterations,
                            "max_search_cases": args.max_search_cases, "seed": args.seed},
                 "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                             "load_average_start": os.getloadavg()},
                 "folds": {}, "cases": {}, "commands": []}
    for k in args.folds:
        fd = work / f"fold_{k}"
        fd.mkdir()
        others = [val[j] for j in args.folds if j != k]
        # nnU-Net's postprocessing, determined on the four other folds (merged, as nnU-Net's crossval results)
        merged = fd / "merged_other_folds"
        merged.mkdir()
        for f in others:
            for p in f.glob(f"*{info.file_ending}"):
                os.symlink(p, merged / p.name)
        cmd = [exe("nnUNetv2_determine_postprocessing"), "-i", str(merged), "-ref", str(gt), "-plans_json",
               str(model / "plans.json"), "-dataset_json", str(model / "dataset.json"), "-np", "1",
               "--remove_postprocessed"]
        t_pp_fit = sh(cmd, log, env)
        out["commands"].append(cmd)
        pkl = merged / "postprocessing.pkl"
        # the refinement, fitted on the same four folds, starting from that postprocessing (--postprocessing):
        # the per-case fit runs the global fit first, so the global refiner is the per-case one without policies
        refiner_pc = fd / "refiner_per_case.json"
        cmd = [*hypera, "fit", "-i", *map(str, others), "-ref", str(gt), "-o", str(refiner_pc),
               "--population", str(args.population), "--iterations", str(args.iterations),
               "--max-search-cases", str(args.max_search_cases), "--seed", str(args.seed),
               "--nsd-tolerance", str(args.nsd_tolerance), "--policy", "per-case"]
        if not args.from_raw:
            cmd += ["--postprocessing", str(pkl)]
        t_fit = sh(cmd, log, env)
        out["commands"].append(cmd)
        fit = json.loads(refiner_pc.read_text())
        glob_doc = {key: v for key, v in fit.items() if key not in ("per_case", "fit")}
        glob_doc["version"] = 4 if glob_doc.get("start") else 2
        refiner_gl = fd / "refiner_global.json"
        atomic_write_json(refiner_gl, glob_doc)
        pp_out = fd / "nnunet_pp"
        cmd = [exe("nnUNetv2_apply_postprocessing"), "-i", str(val[k]), "-o", str(pp_out), "-pp_pkl_file", str(pkl),
               "-np", "1", "-plans_json", str(model / "plans.json"), "-dataset_json", str(model / "dataset.json")]
        sh(cmd, log, env)
        out["commands"].append(cmd)
        pp_times = time_nnunet_pp(pkl, val[k], info, fd / "pp_timing")
        folders = {"raw": val[k], "nnunet_pp": pp_out}
        applied = {}
        for method, refiner in (("global", refiner_gl), ("per_case", refiner_pc)):
            folders[method] = fd / f"refined_{method}"
            cmd = ["taskset", "-c", "0", *hypera, "apply", "-i", str(val[k]), "-o", str(folders[method]),
                   "-m", str(refiner), "-np", "1"]
            if shutil.which("taskset") is None:
                cmd = cmd[3:]
            sh(cmd, log, env)
            out["commands"].append(cmd)
            applied[method] = json.loads((folders[method] / "refinement.json").read_text())
        pp_json = json.loads((merged / "postprocessing.json").read_text())
        cases = list_cases(val[k], info.file_ending)
        scores = {m: score_folder(folders[m], gt, info, cases, args.nsd_tolerance) for m in METHODS}
        # raw Dice must equal nnU-Net's own evaluation of this fold
        summary_file = val[k] / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {"metric_per_case": []}
        max_dev = 0.0 if summary["metric_per_case"] else math.nan
        for entry in summary["metric_per_case"]:
            c = Path(entry["prediction_file"]).name[: -len(info.file_ending)]
            for lab, m in entry["metrics"].items():
                ours, theirs = scores["raw"][c][lab]["Dice"], m["Dice"]
                if not (math.isnan(ours) and (theirs is None or math.isnan(theirs))):
                    max_dev = max(max_dev, abs(ours - theirs))
        # nnU-Net's own evaluation reads all three folders unchanged; its Dice must equal ours
        nn_dev = {}
        for m, folder in folders.items():
            nn_summary = fd / f"nnunet_eval_{m}.json"
            cmd = [exe("nnUNetv2_evaluate_folder"), str(gt), str(folder), "-djfile", str(model / "dataset.json"),
                   "-pfile", str(model / "plans.json"), "-o", str(nn_summary), "-np", "1", "--chill"]
            sh(cmd, log, env)
            out["commands"].append(cmd)
            dev = 0.0
            for entry in json.loads(nn_summary.read_text())["metric_per_case"]:
                c = Path(entry["prediction_file"]).name[: -len(info.file_ending)]
                for lab, mm in entry["metrics"].items():
                    ours, theirs = scores[m][c][lab]["Dice"], mm["Dice"]
                    if not (math.isnan(ours) and (theirs is None or math.isnan(theirs))):
                        dev = max(dev, abs(ours - theirs))
            nn_dev[m] = dev
        for c in cases:
            out["cases"][c] = {"fold": k, **{m: scores[m][c] for m in METHODS},
                               "seconds": {m: applied[m]["cases"][c]["seconds"] for m in applied},
                               "per_case_choice": {lab: v["steps"][0]["per_case_candidate"]
                                                   for lab, v in applied["per_case"]["cases"][c]["classes"].items()
                                                   if v["steps"] and "per_case_candidate" in v["steps"][0]}}
        for c, t in zip(cases, pp_times):
            out["cases"][c]["seconds"]["nnunet_pp"] = t
        out["folds"][str(k)] = {
            "fit_on_folds": [j for j in args.folds if j != k], "n_fit_cases": len(fit["fit"]["cases"]),
            "n_test_cases": len(cases), "refiner_chains": fit["chains"], "refiner_start": fit.get("start", []),
            "per_case_fit": fit["fit"].get("per_case"),
            "per_case_accepted": sorted(fit.get("per_case", {})),
            "refiner_fit_metrics_before": fit["fit"]["metrics_before"],
            "refiner_fit_metrics_after": fit["fit"]["metrics_after"],
            "nnunet_pp": {"functions": pp_json["postprocessing_fns"], "kwargs": pp_json["postprocessing_kwargs"]},
            "seconds": {"refine_fit_wall": t_fit, "nnunet_determine_pp_wall": t_pp_fit,
                        "refine_apply_per_case_mean": {m: a["seconds"]["per_case_mean"] for m, a in applied.items()}},
            "raw_dice_max_abs_deviation_from_nnunet_summary": max_dev,
            "dice_max_abs_deviation_from_nnUNetv2_evaluate_folder": nn_dev,
        }
        print(f"fold {k}: fit {t_fit:.0f} s, chains {json.dumps(fit['chains'])}, per-case policies for classes "
              f"{sorted(fit.get('per_case', {}))}; nnU-Net pp "
              f"{pp_json['postprocessing_fns']}; raw Dice check {max_dev:.2e}, "
              f"nnUNetv2_evaluate_folder Dice check {nn_dev}", flush=True)

    # aggregate over all held-out cases
    agg: dict = {}
    cases = sorted(out["cases"])
    for lab in map(str, info.foreground):
        agg[lab] = {"name": info.labels[int(lab)]}
        for metric in ("Dice", "HD95", "NSD"):
            vals = {m: [out["cases"][c][m][lab][metric] for c in cases] for m in METHODS}
            agg[lab][metric] = {m: {"mean": metrics.nanmean(vals[m]),
                                    "undefined": int(sum(math.isnan(v) for v in vals[m]))} for m in METHODS}
            agg[lab][metric]["nnunet_pp_minus_raw"] = paired(vals["raw"], vals["nnunet_pp"], args.seed)
            for m in REFINED:
                agg[lab][metric][f"{m}_minus_raw"] = paired(vals["raw"], vals[m], args.seed)
                agg[lab][metric][f"{m}_minus_nnunet_pp"] = paired(vals["nnunet_pp"], vals[m], args.seed)
            agg[lab][metric]["per_case_minus_global"] = paired(vals["global"], vals["per_case"], args.seed)
    secs = {m: [out["cases"][c]["seconds"][m] for c in cases] for m in (*REFINED, "nnunet_pp")}
    out["summary"] = {"n_cases": len(cases), "per_class": agg,
                      "seconds_per_case": {m: {"mean": float(np.mean(v)), "median": float(np.median(v)),
                                               "max": float(np.max(v))} for m, v in secs.items()}}
    out["machine"]["load_average_end"] = os.getloadavg()
    doc = json.loads(args.json.read_text()) if args.json.is_file() else {}
    doc.setdefault("description", "Evidence for hypera-nnunet refine: written by benchmarks/refine_hippocampus.py")
    doc.setdefault("runs", {})[args.name] = out
    atomic_write_json(args.json, doc, indent=1)
    print(markdown_table(out))
    return 0


def markdown_table(out: dict) -> str:
    tol = out["nsd_tolerance_mm"]
    lines = ["| class | metric | raw nnU-Net | nnU-Net pp | global fit | per-case policy | global − pp [95% CI] | "
             "per-case − pp [95% CI] |", "|---|---|---|---|---|---|---|---|"]

    def ci(d: dict) -> str:
        lo, hi, mean = (math.nan if d.get(k) is None else d[k] for k in ("ci_low", "ci_high", "mean_diff"))
        return f"{mean:+.4f} [{lo:+.4f}, {hi:+.4f}]"

    for lab, a in out["summary"]["per_class"].items():
        for metric in ("Dice", "HD95", "NSD"):
            m = a[metric]
            name = f"NSD@{tol:g}mm" if metric == "NSD" else metric + (" (mm)" if metric == "HD95" else "")
            lines.append(f"| {lab} {a['name']} | {name} | " + " | ".join(f"{m[x]['mean']:.4f}" for x in METHODS)
                         + f" | {ci(m['global_minus_nnunet_pp'])} | {ci(m['per_case_minus_nnunet_pp'])} |")
    s = out["summary"]["seconds_per_case"]
    lines.append("")
    lines.append("Seconds per case (read, refine, write; one process): " + ", ".join(
        f"{m} mean {s[m]['mean']:.3f} (max {s[m]['max']:.3f})" for m in (*REFINED, "nnunet_pp")) + ".")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
