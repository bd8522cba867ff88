"""``refine apply``: refine every case of a prediction folder (inference mode: no labels, deterministic).

Output: one label map per case with nnU-Net's name, format and geometry (written by nnU-Net's own writer
with the properties read from the input label map), ``dataset.json`` and ``plans.json`` copied (as
``nnUNetv2_predict`` leaves them), and ``refinement.json`` with the actions taken per case and class.
Everything is staged in a hidden folder and moved in at the end (:class:`~hypera_nnunet.refine.io.StagedFolder`),
so a failure leaves no partial output, and a full or read-only disk is one error naming the path. Each case's
label map must be the argmax of its probabilities (:func:`~hypera_nnunet.refine.io.check_label_map_is_argmax`):
refine nnU-Net's raw prediction, not a postprocessed one. The refiner is JSON and the probabilities are read
without pickle; nnU-Net's ``.pkl`` properties with a restricted unpickler (:mod:`hypera_nnunet.refine.io`), so
no file given to ``apply`` can run code.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine import io
from hypera_nnunet.refine.refiner import Refiner


def load_refiner(path: Path, info: io.DatasetInfo | None = None) -> Refiner:
    """Read a refiner written by ``refine fit`` (JSON only: a file that is not JSON, a pickle say, is an error
    naming it, and nothing in it is executed); check its labels against ``dataset.json`` if given.

    :param path: the refiner file.
    :param info: the dataset the refiner will be applied to.
    """
    path = Path(path)
    if not path.is_file():
        raise HyperaError(f"refiner not found: {path} (write one with `hypera-nnunet refine fit`)")
    data = io.read_json(path, "refiner")
    coord = Refiner.from_dict(data, source=str(path))
    if info is not None:
        if set(coord.labels) != set(info.labels):
            raise HyperaError(f"{path} was fitted for labels {sorted(coord.labels)}, but {info.dataset_json_path} "
                              f"declares {sorted(info.labels)}")
        extra = set(coord.chains) - set(info.foreground)
        if extra:
            raise HyperaError(f"{path} has chains for labels {sorted(extra)} not in {info.dataset_json_path}")
    return coord


_WORKER: dict = {}


def _init_worker(refiner: dict, info: io.DatasetInfo, input_folder: str, staging: str) -> None:
    _WORKER["coord"] = Refiner.from_dict(refiner)
    _WORKER["info"] = info
    _WORKER["rw"] = info.reader_writer()
    _WORKER["input"] = Path(input_folder)
    _WORKER["staging"] = Path(staging)


def _process(case: str) -> tuple[str, dict, float]:
    t0 = time.perf_counter()
    w = _WORKER
    pred = io.read_prediction(w["input"], case, w["info"], w["rw"])
    new, log = w["coord"].refine(pred.seg, pred.probs, pred.spacing)
    io.write_seg(w["rw"], new, w["staging"] / f"{case}{w['info'].file_ending}", pred.properties, case)
    changed = int((new != pred.seg).sum())
    entry = {"changed_voxels": changed,
             "classes": {str(lab): {"name": w["coord"].labels.get(lab, str(lab)), "steps": acts}
                         for lab, acts in log.items()}}
    return case, entry, time.perf_counter() - t0


def refine_folder(input_folder: Path, output_folder: Path, refiner: Path, *, num_processes: int = 1,
                  dataset_json: Path | None = None, plans_json: Path | None = None,
                  log=print) -> dict:
    """Refine all cases of ``input_folder`` into ``output_folder``; returns the ``refinement.json`` content.

    :param input_folder: nnU-Net's prediction folder (label maps, ``.npz``, ``.pkl``).
    :param output_folder: where the refined label maps go (created if missing; must differ from the input).
    :param refiner: the JSON file of ``refine fit``.
    :param num_processes: cases refined in parallel, one process each.
    :param dataset_json: ``dataset.json`` (default: looked up next to the predictions).
    :param plans_json: ``plans.json`` (default: looked up next to the predictions).
    :param log: where the one-line summary goes.
    """
    input_folder, output_folder = Path(input_folder), Path(output_folder)
    if not input_folder.is_dir():
        raise HyperaError(f"prediction folder not found: {input_folder}")
    if output_folder.exists() and output_folder.resolve() == input_folder.resolve():
        raise HyperaError("the output folder must differ from the input folder (nnU-Net's predictions would be "
                          "overwritten)")
    if num_processes < 1:
        raise HyperaError(f"-np must be >= 1, got {num_processes}")
    ds_path, plans_path = io.find_dataset_files(input_folder, dataset_json, plans_json)
    info = io.DatasetInfo.load(ds_path, plans_path)
    coord = load_refiner(refiner, info)
    cases = io.list_cases(input_folder, info.file_ending)
    if not cases:
        raise HyperaError(f"{input_folder} has no predictions (*{info.file_ending})")
    io.check_inputs_present(input_folder, cases)
    t0 = time.perf_counter()
    results: dict[str, dict] = {}
    times: dict[str, float] = {}
    with io.StagedFolder(output_folder) as stage:
        args = (coord.to_dict(), info, str(input_folder), str(stage.path))
        if num_processes == 1:
            _init_worker(*args)
            outputs = map(_process, cases)
        else:
            pool = multiprocessing.get_context("spawn").Pool(min(num_processes, len(cases)), _init_worker, args)
            outputs = pool.imap(_process, cases)
        try:
            for case, entry, seconds in outputs:
                results[case] = entry
                times[case] = seconds
        finally:
            if num_processes > 1:
                pool.terminate()
                pool.join()
            _WORKER.clear()
        stage.copy_in(info.dataset_json_path, "dataset.json")
        stage.copy_in(info.plans_json_path, "plans.json")
        wall = time.perf_counter() - t0
        summary = {
            "refiner": str(Path(refiner).resolve()),
            "input_folder": str(input_folder.resolve()),
            "mode": "inference (no labels, deterministic)",
            "num_processes": num_processes,
            "chains": coord.to_dict()["chains"],
            "seconds": {"wall": wall, "per_case_mean": sum(times.values()) / len(times),
                        "per_case_max": max(times.values()),
                        "note": "per case: read label map + .npz + .pkl, refine, write; one process each"},
            "cases": {c: {**results[c], "seconds": times[c]} for c in cases},
        }
        atomic_write_json(stage.path / "refinement.json", summary)
    n_changed = sum(1 for r in results.values() if r["changed_voxels"])
    log(f"refined {len(cases)} case(s) into {output_folder} ({n_changed} changed), "
        f"{summary['seconds']['per_case_mean']:.3f} s per case, {wall:.1f} s wall")
    return summary
