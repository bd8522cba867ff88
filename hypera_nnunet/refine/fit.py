"""``refine fit``: tune the refinement steps on nnU-Net's cross-validation predictions against the ground truth.

Inputs are ``fold_X/validation`` folders of ``nnUNetv2_train --npz`` (label maps, ``.npz`` probabilities and
``.pkl`` properties) and the reference folder nnU-Net evaluates them against
(``$nnUNet_preprocessed/<dataset>/gt_segmentations``). Output: the refiner (JSON: the accepted chain of tuned
steps per class, the settings, and the fit report with the metrics before and after per class), and, when only
segmentation-only steps were used, an nnU-Net ``postprocessing.pkl`` with the same refinement.

Files that travel between users: the refiner is JSON, read back by ``refine apply`` without pickle. The
``postprocessing.pkl`` is nnU-Net's own format (a pickle of function references, which nnU-Net's
``nnUNetv2_apply_postprocessing`` loads with ``pickle``); it cannot be anything else for nnU-Net to use it, and
``refine apply`` never reads it. Both are written atomically (:mod:`hypera_nnunet.common.atomic_io`).
"""

from __future__ import annotations

import multiprocessing
import pickle
import re
import time
from collections.abc import Sequence
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_bytes, atomic_write_json
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine import io
from hypera_nnunet.refine.refiner import FitCase, Refiner
from hypera_nnunet.refine.reward import RewardWeights
from hypera_nnunet.refine.search import SearchSettings
from hypera_nnunet.refine.steps import STEP_ORDER


def nnunet_cv_folders(dataset: str, configuration: str, trainer: str, plans: str,
                      folds: Sequence[int]) -> tuple[list[Path], Path, Path]:
    """nnU-Net's layout: (``fold_k/validation`` folders, ``gt_segmentations``, the model folder)."""
    from hypera_nnunet.env import require_nnunet_folders

    folders = require_nnunet_folders(("nnUNet_preprocessed", "nnUNet_results"))
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(dataset)
    except (RuntimeError, ValueError) as e:
        raise HyperaError(f"dataset '{dataset}': {e}") from None
    model = folders["nnUNet_results"] / name / f"{trainer}__{plans}__{configuration}"
    if not model.is_dir():
        raise HyperaError(f"no trained model at {model} (train with `nnUNetv2_train {dataset} {configuration} FOLD "
                          f"-tr {trainer} -p {plans} --npz`)")
    val = [model / f"fold_{f}" / "validation" for f in folds]
    missing = [str(v) for v in val if not v.is_dir()]
    if missing:
        raise HyperaError(f"validation folder(s) missing: {', '.join(missing)} (train those folds with --npz, "
                          "or run nnUNetv2_train ... --val --npz)")
    return val, folders["nnUNet_preprocessed"] / name / "gt_segmentations", model


def _fold_of(folder: Path, index: int) -> int:
    m = re.fullmatch(r"fold_(\d+)", folder.parent.name) if folder.name == "validation" else None
    return int(m.group(1)) if m else index


_LOADER: dict = {}


def _init_loader(info: io.DatasetInfo, ref_folder: str) -> None:
    _LOADER.update(info=info, rw=info.reader_writer(), ref=Path(ref_folder))


def _load_raw(job: tuple[str, str, int]):
    folder, case, fold = job
    info, rw = _LOADER["info"], _LOADER["rw"]
    pred = io.read_prediction(Path(folder), case, info, rw)
    ref = io.read_reference(_LOADER["ref"], case, info, rw, pred)
    return case, pred.seg, ref, pred.probs, pred.spacing, fold


def _started(coord: Refiner, seg):
    """The case as the refinement starts from it: after nnU-Net's postprocessing, if the refiner has one."""
    if not coord.start:
        return seg
    from hypera_nnunet.refine.start import apply_start

    return apply_start(seg, coord.start)


def load_fit_cases(folders: Sequence[Path], ref_folder: Path, info: io.DatasetInfo,
                   coord: Refiner, num_processes: int = 1) -> list[FitCase]:
    ref_folder = Path(ref_folder)
    if not ref_folder.is_dir():
        raise HyperaError(f"reference folder not found: {ref_folder}")
    jobs, seen = [], {}
    for i, folder in enumerate(folders):
        cases = io.list_cases(folder, info.file_ending)
        if not cases:
            raise HyperaError(f"{folder} has no predictions (*{info.file_ending})")
        io.check_inputs_present(folder, cases)
        for c in cases:
            if c in seen:
                raise HyperaError(f"case {c} is in both {seen[c]} and {folder}: each case must appear once")
            seen[c] = folder
            jobs.append((str(folder), c, _fold_of(Path(folder), i)))
    out: list[FitCase] = []
    if num_processes > 1:
        with multiprocessing.get_context("spawn").Pool(num_processes, _init_loader, (info, str(ref_folder))) as pool:
            for name, seg, ref, probs, spacing, fold in pool.imap(_load_raw, jobs):
                out.append(FitCase.from_arrays(name, _started(coord, seg), ref, probs, spacing, coord.margin(spacing),
                                               fold))
    else:
        _init_loader(info, str(ref_folder))
        try:
            for job in jobs:
                name, seg, ref, probs, spacing, fold = _load_raw(job)
                out.append(FitCase.from_arrays(name, _started(coord, seg), ref, probs, spacing, coord.margin(spacing),
                                               fold))
        finally:
            _LOADER.clear()
    return out


def fit_refiner(folders: Sequence[Path], ref_folder: Path, output: Path, *, dataset_json: Path | None = None,
                plans_json: Path | None = None, steps: Sequence[str] = STEP_ORDER, seed: int = 0,
                search: SearchSettings | None = None, weights: RewardWeights | None = None,
                min_gain: float = 0.0, max_removed_fraction: float = 0.5, num_processes: int = 1,
                policy: str = "global", postprocessing: Path | None = None, log=print) -> dict:
    """Fit and write the refiner to ``output``; returns what was written.

    :param folders: ``fold_X/validation`` folders (label maps, ``.npz``, ``.pkl``); each case in one of them.
    :param ref_folder: the ground truth (nnU-Net: ``gt_segmentations``).
    :param output: the refiner file (``*.json``).
    :param dataset_json: ``dataset.json`` (default: looked up next to the first folder).
    :param plans_json: ``plans.json`` (default: looked up next to the first folder).
    :param steps: the steps to tune (:data:`~hypera_nnunet.refine.steps.STEP_ORDER`).
    :param seed: seed of the refiner's Generator.
    :param search: CEM budget per step and class.
    :param weights: base reward weights and the NSD tolerance.
    :param min_gain: mean Dice a class must gain for its chain to be accepted.
    :param max_removed_fraction: the removal guard (1 disables it).
    :param num_processes: processes reading the cases.
    :param policy: ``global`` (one chain per class) or ``per-case`` (then :func:`.per_case.fit_per_case`).
    :param postprocessing: nnU-Net's ``postprocessing.pkl``: every case starts from its output, in fit and apply
        (:mod:`.start`); None: from nnU-Net's raw prediction.
    :param log: where progress goes.
    """
    search = search if search is not None else SearchSettings()
    weights = weights if weights is not None else RewardWeights()
    folders = [Path(f) for f in folders]
    if not folders:
        raise HyperaError("no prediction folders given")
    if num_processes < 1:
        raise HyperaError(f"-np must be >= 1, got {num_processes}")
    output = Path(output)
    if output.suffix != ".json":
        raise HyperaError(f"the refiner is a JSON file: name it *.json (got {output})")
    ds_path, plans_path = io.find_dataset_files(folders[0], dataset_json, plans_json)
    info = io.DatasetInfo.load(ds_path, plans_path)
    coord = Refiner(steps, labels=info.labels, seed=seed, weights=weights, search=search,
                                         min_gain=min_gain, max_removed_fraction=max_removed_fraction)
    if postprocessing is not None:
        from hypera_nnunet.refine.start import read_postprocessing

        coord.start = read_postprocessing(postprocessing)
        log(f"starting from nnU-Net's postprocessing {postprocessing}: "
            f"{[st.to_dict() for st in coord.start] or 'no function (nnU-Net chose none)'}")
    t0 = time.perf_counter()
    cases = load_fit_cases(folders, ref_folder, info, coord, num_processes)
    t_load = time.perf_counter() - t0
    log(f"loaded {len(cases)} cases from {len(folders)} folder(s) in {t_load:.1f} s; tuning steps "
        f"{list(coord.steps)} (CEM: population {search.population}, {search.iterations} iterations, "
        f"<= {search.max_search_cases} search cases, seed {seed})")
    report = coord.fit(cases, info.foreground, log=log)
    if policy == "per-case":
        from hypera_nnunet.refine.per_case import fit_per_case

        coord.per_case, report["per_case"] = fit_per_case(coord, cases, info.foreground, report, log=log)
    elif policy != "global":
        raise HyperaError(f"--policy {policy!r}: choose global or per-case")
    result = coord.to_dict()
    result["fit"] = {
        "mode": "training (rewards from the labels)",
        "prediction_folders": [str(f.resolve()) for f in folders], "reference_folder": str(Path(ref_folder).resolve()),
        "dataset_json": str(ds_path.resolve()), "plans_json": str(plans_path.resolve()),
        "cases": [c.name for c in cases], "folds": {c.name: c.fold for c in cases},
        "nsd_tolerance_mm": weights.nsd_tolerance_mm,
        "seconds": {"load": t_load, "fit": time.perf_counter() - t0 - t_load},
        **report,
    }
    atomic_write_json(output, result)
    log(format_before_after(result))
    if not any(a.uses_probabilities for a in coord.steps.values()):
        from hypera_nnunet.refine.postprocessing import chains_to_postprocessing

        pkl = output.with_name(f"{output.stem}_postprocessing.pkl")
        atomic_write_bytes(pkl, pickle.dumps(chains_to_postprocessing(coord)))
        result["postprocessing_pkl"] = str(pkl)
        log(f"segmentation-only refinement: also wrote {pkl} (use: nnUNetv2_apply_postprocessing -pp_pkl_file {pkl})")
    log(f"wrote {output}")
    return result


def format_before_after(result: dict) -> str:
    fit = result["fit"]
    tol = fit["nsd_tolerance_mm"]
    lines = [f"{'class':<16}{'accepted':<10}{'Dice':>17}{'HD95 mm':>17}{f'NSD@{tol:g}mm':>17}"]
    for lab, c in fit["classes"].items():
        b, a = fit["metrics_before"][lab], fit["metrics_after"][lab]
        lines.append(f"{lab + ' ' + c['name']:<16}{'yes' if c['accepted'] else 'no':<10}"
                     f"{b['Dice']:>8.4f}->{a['Dice']:<7.4f}{b['HD95']:>8.3f}->{a['HD95']:<7.3f}"
                     f"{b['NSD']:>8.4f}->{a['NSD']:<7.4f}")
    return "\n".join(lines)
