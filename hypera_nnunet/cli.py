"""``hypera-nnunet``: the demo, nnU-Net wrappers that set ``nnUNet_extTrainer``, and the subcommands.

    hypera-nnunet demo                      # synthetic data, nnUNetTrainer vs HyperaTrainer, side by side
    eval "$(hypera-nnunet env)"             # export nnUNet_extTrainer so nnUNetv2_train finds HyperaTrainer
    hypera-nnunet train 4 3d_fullres 0 -tr HyperaTrainer -device cpu    # nnUNetv2_train, with checks
    hypera-nnunet trainers                  # list the trainer variants
    hypera-nnunet check-config cfg.yaml     # validate a HYPERA_CONFIG file
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from hypera_nnunet import __version__
from hypera_nnunet.errors import HyperaError


def _cmd_env(args) -> int:
    from hypera_nnunet.env import shell_exports

    print(shell_exports())
    return 0


def _cmd_trainers(args) -> int:
    from hypera_nnunet.nnunet.budget import EPOCHS, ITERS
    from hypera_nnunet.nnunet.variant_table import VARIANTS

    print("HYPERA trainers (each also as <name>_<E>epochs and <name>_<E>epochs_<I>iters):")
    for name, v in VARIANTS.items():
        print(f"  {name:28s} {v.doc}")
    print(f"Budgets: E in {list(EPOCHS)}, I in {list(ITERS)}; baselines nnUNetTrainer_<E>epochs_<I>iters.")
    return 0


def _cmd_check_config(args) -> int:
    """Check a config file the way a run of ``args.tr`` reads it; print the effective configuration."""
    import json

    from hypera_nnunet.config import changed_settings, flat_settings, run_config, variant_config

    cfg = run_config(args.tr, args.file)
    variant = flat_settings(variant_config(args.tr, for_run=False))
    print(f"{args.file} on {args.tr}: OK")
    print(f"  agents ({len(cfg.agents)}): {', '.join(cfg.agents)}")
    changed = changed_settings(cfg)
    print("  settings that differ from the defaults:" if changed else "  all other settings are the defaults")
    for key, (value, default) in changed.items():
        by = args.tr if key in variant and variant[key] == value else args.file
        print(f"    {key} = {json.dumps(value)}  (default {json.dumps(default)}; set by {by})")
    return 0


def preflight_train(dataset: str, configuration: str, trainer: str, plans: str) -> Path:
    """Clear errors for what nnUNetv2_train would otherwise report as a traceback; returns the dataset's
    preprocessed folder."""
    from hypera_nnunet.env import require_nnunet_folders
    from hypera_nnunet.nnunet.names import known_trainer

    folders = require_nnunet_folders()
    if not known_trainer(trainer):
        raise HyperaError(f"unknown trainer '{trainer}': neither nnU-Net nor HYPERA defines it "
                          "(`hypera-nnunet trainers` lists HYPERA's).")
    from hypera_nnunet.data import dataset_name

    pre = folders["nnUNet_preprocessed"]
    try:  # nnU-Net's own id -> name lookup (raw, preprocessed and results folders)
        dataset_dir = pre / dataset_name(dataset)
    except HyperaError:
        dataset_dir = None
    if dataset_dir is None or not dataset_dir.is_dir():
        raise HyperaError(f"dataset '{dataset}' was never preprocessed: nothing for it in {pre}. Run "
                          f"`nnUNetv2_plan_and_preprocess -d {dataset}` first.")
    plans_file = dataset_dir / f"{plans}.json"
    if not plans_file.is_file():
        raise HyperaError(f"{plans_file} does not exist: dataset '{dataset}' has no plans '{plans}'.")
    import json

    confs = json.loads(plans_file.read_text()).get("configurations", {})
    if configuration not in confs:
        raise HyperaError(f"{plans_file} has no configuration '{configuration}' (has: {', '.join(confs)}).")
    from hypera_nnunet.nnunet.variant_table import hypera_variant_of

    if hypera_variant_of(trainer) is not None:  # the configuration exactly as the trainer will read it
        from hypera_nnunet.config import run_config

        run_config(trainer)
    return dataset_dir


def preflight_resume(dataset_dir: Path, configuration: str, trainer: str, plans: str, fold: str) -> None:
    """For ``--c``: the checkpoint nnU-Net will resume from must be intact (one line naming it otherwise)."""
    from hypera_nnunet.env import require_nnunet_folders
    from hypera_nnunet.nnunet.checkpoint import check_checkpoint, resume_checkpoint

    fold_dir = require_nnunet_folders()["nnUNet_results"] / dataset_dir.name / f"{trainer}__{plans}__{configuration}"
    fold_dir = fold_dir / ("fold_all" if fold == "all" else f"fold_{fold}")
    found = resume_checkpoint(fold_dir)
    if found is not None:
        check_checkpoint(found)


def _cmd_train(args, rest: list[str]) -> int:
    from hypera_nnunet.env import nnunet_env

    dataset_dir = preflight_train(args.dataset, args.configuration, args.tr, args.p)
    if "--c" in rest:
        preflight_resume(dataset_dir, args.configuration, args.tr, args.p, args.fold)
    from hypera_nnunet.data import nnunet_exe

    cmd = [nnunet_exe("nnUNetv2_train"), args.dataset, args.configuration, args.fold, "-tr", args.tr, "-p", args.p,
           *rest]
    return subprocess.call(cmd, env=nnunet_env())


def _cmd_passthrough(args, rest: list[str]) -> int:
    from hypera_nnunet.data import nnunet_exe
    from hypera_nnunet.env import nnunet_env

    return subprocess.call([nnunet_exe(args.nnunet_command), *rest], env=nnunet_env())


def _cmd_demo(args) -> int:
    from hypera_nnunet.demo import DemoSettings, run_demo

    run_demo(DemoSettings(folder=Path(args.dir), epochs=args.epochs, iterations=args.iters, seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hypera-nnunet", description="HYPERA for nnU-Net v2.")
    p.add_argument("--version", action="version", version=f"hypera-nnunet {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="synthetic 3D dataset: nnUNetTrainer vs HyperaTrainer on the CPU, side by side")
    d.add_argument("--dir", default="hypera_demo", help="folder for the demo's nnU-Net data (default: ./hypera_demo)")
    d.add_argument("--epochs", type=int, default=10, help="epochs per trainer (a registered budget; default 10)")
    d.add_argument("--iters", type=int, default=10, help="iterations per epoch (a registered budget; default 10)")
    d.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser("env", help="print `export nnUNet_extTrainer=...` (use: eval \"$(hypera-nnunet env)\")")
    e.set_defaults(func=_cmd_env)

    t = sub.add_parser("trainers", help="list the HYPERA trainer variants")
    t.set_defaults(func=_cmd_trainers)

    c = sub.add_parser("check-config", help="validate a HYPERA_CONFIG file (JSON or YAML) on a trainer and print "
                                            "the effective configuration")
    c.add_argument("file")
    c.add_argument("-tr", default="HyperaTrainer", help="the HYPERA trainer the file is merged onto "
                                                        "(default: HyperaTrainer)")
    c.set_defaults(func=_cmd_check_config)

    tr = sub.add_parser("train", help="nnUNetv2_train with nnUNet_extTrainer set and clear checks first; "
                                      "other options pass through")
    tr.add_argument("dataset")
    tr.add_argument("configuration")
    tr.add_argument("fold")
    tr.add_argument("-tr", default="HyperaTrainer")
    tr.add_argument("-p", default="nnUNetPlans")
    tr.set_defaults(func=_cmd_train, passthrough=True)

    for name, nn_cmd in (("predict", "nnUNetv2_predict"), ("find-best", "nnUNetv2_find_best_configuration")):
        pp = sub.add_parser(name, help=f"{nn_cmd} with nnUNet_extTrainer set; all options pass through",
                            add_help=False)
        pp.set_defaults(func=_cmd_passthrough, passthrough=True, nnunet_command=nn_cmd)

    from hypera_nnunet.benchmark.cli import register as register_benchmark
    from hypera_nnunet.refine.cli import register as register_refine
    from hypera_nnunet.report.cli import register as register_report
    from hypera_nnunet.search.cli import register as register_search
    from hypera_nnunet.store.cli import register as register_agents

    register_refine(sub)
    register_benchmark(sub)
    register_report(sub)
    register_search(sub)
    register_agents(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if rest and not getattr(args, "passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if getattr(args, "passthrough", False):
            return int(args.func(args, rest) or 0)
        return int(args.func(args) or 0)
    except HyperaError as e:
        print(f"hypera-nnunet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hypera-nnunet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
