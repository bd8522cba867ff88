"""``hypera-nnunet refine fit`` and ``hypera-nnunet refine apply``.

    # learn on nnU-Net's cross-validation predictions (nnUNetv2_train ... --npz), nnU-Net's layout:
    hypera-nnunet refine fit -d 4 -c 3d_fullres -tr nnUNetTrainer -p nnUNetPlans -f 0 1 2 3 4
    # or on explicit folders:
    hypera-nnunet refine fit -i .../fold_0/validation .../fold_1/validation -ref .../gt_segmentations -o refiner.json
    # refine any folder of nnUNetv2_predict --save_probabilities:
    hypera-nnunet refine apply -i predictions -o refined -m refiner.json -np 2
    nnUNetv2_evaluate_folder labelsTs refined -djfile refined/dataset.json -pfile refined/plans.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hypera_nnunet.errors import HyperaError


def _cmd_fit(args) -> int:
    from hypera_nnunet.refine.fit import fit_refiner, nnunet_cv_folders
    from hypera_nnunet.refine.reward import RewardWeights
    from hypera_nnunet.refine.search import SearchSettings

    if bool(args.i) == bool(args.d):
        raise HyperaError("give either -i FOLDER [FOLDER ...] with -ref, or -d DATASET (nnU-Net's layout)")
    if args.i:
        if not args.ref:
            raise HyperaError("-ref GT_FOLDER is needed with -i (nnU-Net evaluates cross-validation against "
                              "$nnUNet_preprocessed/<dataset>/gt_segmentations)")
        if not args.o:
            raise HyperaError("-o REFINER.json is needed with -i")
        folders, ref, output = [Path(p) for p in args.i], Path(args.ref), Path(args.o)
    else:
        folders, ref, model = nnunet_cv_folders(args.d, args.c, args.tr, args.p, args.f)
        ref = Path(args.ref) if args.ref else ref
        output = Path(args.o) if args.o else model / "hypera_refiner.json"
    search = SearchSettings(population=args.population, iterations=args.iterations,
                            max_search_cases=args.max_search_cases)
    fit_refiner(folders, ref, output, dataset_json=args.dataset_json, plans_json=args.plans_json,
                steps=args.steps, seed=args.seed, search=search,
                weights=RewardWeights(nsd_tolerance_mm=args.nsd_tolerance), min_gain=args.min_gain,
                max_removed_fraction=args.max_removed_fraction, num_processes=args.np, policy=args.policy,
                postprocessing=args.postprocessing)
    return 0


def _cmd_apply(args) -> int:
    from hypera_nnunet.refine.apply import refine_folder

    refine_folder(Path(args.i), Path(args.o), Path(args.m), num_processes=args.np,
                  dataset_json=args.dataset_json, plans_json=args.plans_json)
    return 0


def _path(value: str) -> Path:
    return Path(value)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``refine`` (with ``fit`` and ``apply``) to an argparse subparsers object."""
    from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM
    from hypera_nnunet.refine.steps import STEP_ORDER, canonical_name

    r = subparsers.add_parser("refine", help="refine nnU-Net's predictions from its saved probabilities with tuned "
                                             "postprocessing steps (fit on cross-validation, apply to predictions)")
    rsub = r.add_subparsers(dest="refine_command", required=True)

    f = rsub.add_parser("fit", help="tune the refinement steps on cross-validation predictions (nnUNetv2_train --npz) "
                                    "against the ground truth; training mode")
    f.add_argument("-i", nargs="+", metavar="FOLDER", help="fold_X/validation folders (label maps, .npz, .pkl)")
    f.add_argument("-ref", metavar="GT_FOLDER", help="ground-truth label maps (nnU-Net: gt_segmentations)")
    f.add_argument("-d", metavar="DATASET", help="dataset name or id: use nnU-Net's results layout instead of -i")
    f.add_argument("-c", default="3d_fullres", help="configuration (with -d; default 3d_fullres)")
    f.add_argument("-tr", default="nnUNetTrainer", help="trainer (with -d; default nnUNetTrainer)")
    f.add_argument("-p", default="nnUNetPlans", help="plans identifier (with -d; default nnUNetPlans)")
    f.add_argument("-f", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (with -d; default 0 1 2 3 4)")
    f.add_argument("-o", metavar="REFINER.json", help="output refiner (with -d, default "
                                                      "<model folder>/hypera_refiner.json)")
    f.add_argument("-dataset_json", type=_path, help="dataset.json (default: looked up next to the predictions)")
    f.add_argument("-plans_json", type=_path, help="plans.json (default: looked up next to the predictions)")
    f.add_argument("--steps", "--agents", dest="steps", nargs="+", type=canonical_name, metavar="STEP",
                   default=list(STEP_ORDER),
                   choices=list(STEP_ORDER),
                   help=f"steps to tune, of {', '.join(STEP_ORDER)} (default: all; --agents and the old names are "
                        "accepted). Only 'morphology components': also writes an nnU-Net postprocessing.pkl")
    f.add_argument("--population", type=int, default=8, help="CEM samples per iteration (default 8)")
    f.add_argument("--iterations", type=int, default=3, help="CEM iterations per step and class (default 3)")
    f.add_argument("--max-search-cases", type=int, default=64,
                   help="cases the search scores candidates on (default 64); acceptance uses all")
    f.add_argument("--min-gain", type=float, default=0.0,
                   help="mean Dice a class must gain to accept its refinement (default 0: any gain, as nnU-Net)")
    f.add_argument("--max-removed-fraction", type=float, default=0.5,
                   help="removal guard: in each case, skip an action that would remove more than this fraction of "
                        "a class's voxels (default 0.5; 1 disables)")
    f.add_argument("--nsd-tolerance", type=float, default=DEFAULT_NSD_TOLERANCE_MM,
                   help=f"NSD tolerance in mm for the reward and report (default {DEFAULT_NSD_TOLERANCE_MM})")
    f.add_argument("--policy", default="global", choices=("global", "per-case"),
                   help="global: one chain per class for every case (default); per-case: then a policy that picks "
                        "each case's refinement from its state, kept per class only if it wins on held-out folds "
                        "without any class getting worse in Dice, HD95 or NSD")
    f.add_argument("--postprocessing", type=_path, metavar="PKL",
                   help="start from nnU-Net's postprocessing: the postprocessing.pkl of "
                        "nnUNetv2_determine_postprocessing (or find_best_configuration), applied to every case "
                        "before the steps, in fit and apply (default: start from the raw prediction)")
    f.add_argument("--seed", type=int, default=0, help="seed of the search's Generator (default 0)")
    f.add_argument("-np", type=int, default=1, help="processes for reading the cases (default 1)")
    f.set_defaults(func=_cmd_fit)

    a = rsub.add_parser("apply", help="refine a prediction folder (nnUNetv2_predict --save_probabilities); "
                                      "inference mode, deterministic")
    a.add_argument("-i", required=True, help="prediction folder (label maps, .npz, .pkl)")
    a.add_argument("-o", required=True, help="output folder (label maps, refinement.json, dataset.json, plans.json)")
    a.add_argument("-m", required=True, metavar="REFINER.json", help="refiner written by `refine fit`")
    a.add_argument("-np", type=int, default=1, help="processes, one case each (default 1)")
    a.add_argument("-dataset_json", type=_path, help="dataset.json (default: looked up next to the predictions)")
    a.add_argument("-plans_json", type=_path, help="plans.json (default: looked up next to the predictions)")
    a.set_defaults(func=_cmd_apply)
    return r


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m hypera_nnunet.refine.cli refine ...``): the main CLI, same behaviour."""
    from hypera_nnunet.cli import main as hypera_main

    return hypera_main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
