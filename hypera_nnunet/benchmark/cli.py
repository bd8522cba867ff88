"""``hypera-nnunet benchmark``: train every (seed, fold, trainer) with nnU-Net, then write the report.

    hypera-nnunet benchmark -d 4 -c 3d_fullres --protocol cpu -tr nnUNetTrainer HyperaTrainer --out bench/
    hypera-nnunet benchmark -d 4 --protocol cpu -tr nnUNetTrainer HyperaTrainer --out bench/ --report-only
    hypera-nnunet benchmark -d 4 --protocol gpu -tr nnUNetTrainer HyperaTrainer --out bench/ --time-limit 540

Trainers are given by base name; the protocol appends its budget (``nnUNetTrainer`` becomes
``nnUNetTrainer_20epochs_25iters`` under ``cpu``). The first trainer is the baseline of the paired tests.
A HYPERA trainer can also be given as ``TRAINER:CONFIG``, a HYPERA config file (``HYPERA_CONFIG``): it is
reported as ``TRAINER[<file stem>]`` and its results live in ``nnUNet_results/hypera_variants/<file stem>``,
so several configurations of one trainer share one report:

    hypera-nnunet benchmark -d 4 -tr nnUNetTrainer HyperaTrainer HyperaTrainer:gs4.json --out bench/

Seeded by default: every training of seed s gets ``HYPERA_SEED=s`` (``--seeds``), so the trainers of one
(fold, seed) share nnU-Net's random numbers; runs that were not seeded alike are never paired (``--unseeded``:
repetitions in the layout of runs made before seeding).

Jobs run fold by fold (fold 0 of every trainer, then fold 1, ...), so a run cut short still has paired folds.
One harness at a time per output folder (a lock on ``--out``; a second one names the holder's pid). Stopped with
SIGTERM, SIGHUP or Ctrl-C, it stops its trainings' process groups; killed with SIGKILL, its trainings end too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from hypera_nnunet.benchmark.protocol import PROTOCOLS, get_protocol
from hypera_nnunet.benchmark.runner import Job, display_name, results_root_for_seed, run_jobs
from hypera_nnunet.common.atomic_io import atomic_write_json, atomic_write_text
from hypera_nnunet.common.locks import FolderLock
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.variant_table import (
    SEEDABLE_BASELINE,
    hypera_variant_of,
    is_hypera_name,
    reads_config_file,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--dataset", required=True,
                   help="nnU-Net dataset id or name (e.g. 4 or Dataset004_Hippocampus)")
    p.add_argument("-c", "--configuration", default=None,
                   help="nnU-Net configuration (default: the protocol's: 2d for cpu-v3, else 3d_fullres)")
    p.add_argument("--protocol", default="cpu-v2", choices=sorted(PROTOCOLS),
                   help="fixed plans + budget + concurrency (docs/benchmark_protocol.md); default cpu-v2")
    p.add_argument("-tr", "--trainers", nargs="+", default=["nnUNetTrainer", "HyperaTrainer"],
                   help="base trainer names, or TRAINER:CONFIG for a HYPERA trainer run with a HYPERA config file; the "
                        "first is the baseline (default: nnUNetTrainer HyperaTrainer)")
    p.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0],
                   help="seeds: each training of seed s runs with HYPERA_SEED=s (nnU-Net's streams and the agents' "
                        "seeds derive from (s, fold), so the trainers of one (fold, seed) share their random "
                        "numbers); results in nnUNet_results/hypera_seeded/seed<s> (default: 0)")
    p.add_argument("--unseeded", action="store_true",
                   help="repetitions without HYPERA_SEED, in the layout of runs made before seeding (seed 0 = "
                        "nnUNet_results, seed s = nnUNet_results/hypera_seeds/seed<s>; HYPERA's agents seeded with s "
                        "through HYPERA_CONFIG); to continue or report such runs")
    p.add_argument("--epochs", type=int, default=None, help="override the protocol's epochs (registered grid only)")
    p.add_argument("--iters", type=int, default=None, help="override the protocol's iterations per epoch")
    p.add_argument("-p", "--plans", default=None, help="override the protocol's plans identifier")
    p.add_argument("--device", default=None, help="override the protocol's device (cpu, cuda)")
    p.add_argument("-j", "--concurrency", type=int, default=None,
                   help="trainings at once (protocol default: cpu 1, gpu 10)")
    p.add_argument("--npz", action="store_true", help="pass --npz to nnUNetv2_train (keep validation probabilities)")
    p.add_argument("--out", type=Path, default=Path("hypera_benchmark"),
                   help="folder for report.md, results.json, plots and logs (default ./hypera_benchmark)")
    p.add_argument("--report-only", action="store_true", help="train nothing; report what has finished")
    p.add_argument("--dry-run", action="store_true", help="print the nnUNetv2_train commands and stop")
    p.add_argument("--no-surface", action="store_true", help="skip HD95/NSD (they read every validation prediction)")
    p.add_argument("--nsd-tolerance", type=float, default=None,
                   help="NSD tolerance in mm (default: hypera_nnunet.refine.metrics.DEFAULT_NSD_TOLERANCE_MM)")
    p.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds; stop the trainings after this long (they resume with --c next time), then report")
    p.add_argument("--test-folder", type=Path, default=None,
                   help="images to predict with each trainer's folds (nnUNetv2_predict) after training")
    p.add_argument("--test-labels", type=Path, default=None,
                   help="labels for --test-folder: evaluate the predictions with nnUNetv2_evaluate_folder")
    p.add_argument("--refine", action="append", default=[], metavar="NAME=COMMAND",
                   help="a refinement variant run on each finished fold's validation predictions: COMMAND (a shell "
                        "command; {input} = fold_X/validation, {output} = folder to write, {trainer}, {fold}) is "
                        "scored with nnUNetv2_evaluate_folder and reported as <trainer>+NAME, paired against the "
                        "baseline and its own trainer; repeatable")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``benchmark`` to the ``hypera-nnunet`` subcommands (``func`` returns the exit code)."""
    p = subparsers.add_parser("benchmark", help="nnUNetTrainer vs HyperaTrainer over nnU-Net's folds, with a report",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run_cli, argv=None)
    return p


def _dataset_name(dataset: str, preprocessed: Path) -> str:
    """nnU-Net's name of ``dataset`` (an id or a name), which must have a folder in ``preprocessed``."""
    from hypera_nnunet.data import dataset_name

    hint = f"Run `nnUNetv2_plan_and_preprocess -d {dataset} -c <configuration>` first."
    try:
        name = dataset_name(dataset)
    except HyperaError as e:
        raise HyperaError(f"{e} {hint}") from None
    if not (preprocessed / name).is_dir():
        raise HyperaError(f"dataset '{dataset}' was never preprocessed: {preprocessed / name} (nnUNet_preprocessed) "
                          f"does not exist. {hint}")
    return name


def _ensure_plans(pre_dir: Path, plans: str, configuration: str, protocol) -> None:
    path = pre_dir / f"{plans}.json"
    if path.is_file():
        conf = json.loads(path.read_text()).get("configurations", {})
        if configuration not in conf:
            raise HyperaError(f"{path} has no configuration '{configuration}' (has: {sorted(conf)}).")
        return
    rp = protocol.reduced_plans
    if rp is not None and rp.name == plans:
        from hypera_nnunet.nnunet.plans import write_reduced_plans

        write_reduced_plans(pre_dir, target_plans=plans, configuration=configuration, batch_size=rp.batch_size,
                            feature_divisor=rp.feature_divisor)
        print(f"wrote {path} (batch {rp.batch_size}, features / {rp.feature_divisor}, nnU-Net's patch size)")
        return
    raise HyperaError(f"{path} does not exist: plan the dataset with `nnUNetv2_plan_and_preprocess` "
                      f"(plans identifier '{plans}') first.")


def _is_hypera(trainer: str) -> bool:
    """Whether ``trainer`` runs HYPERA's agents (a variant of the table, at any budget; not the baselines)."""
    return hypera_variant_of(trainer) is not None


def seedable(trainer: str) -> bool:
    """Whether ``HYPERA_SEED`` seeds ``trainer``: every HYPERA trainer, the ``nnUNetTrainer_<E>epochs_<I>iters``
    baselines and ``nnUNetTrainerSeedable``; not nnU-Net's own trainers (``nnUNetTrainer``,
    ``nnUNetTrainer_<E>epochs``, ``nnUNetTrainerNoDA``, ...), which seed nothing."""
    return trainer == SEEDABLE_BASELINE or is_hypera_name(trainer)


def unseedable_warning(trainer: str) -> str:
    """The one line a seeded benchmark prints for a trainer that ``HYPERA_SEED`` cannot seed."""
    return (f"warning: {trainer} is nnU-Net's own trainer and cannot be seeded (HYPERA_SEED does nothing to it), "
            "so its runs will not be paired with seeded runs; use nnUNetTrainerSeedable (nnU-Net's full budget) or "
            "an nnUNetTrainer_<E>epochs_<I>iters baseline instead.")


def _seed_config_file(trainer: str, seed: int, out_dir: Path, config: Path | None = None,
                      variant: str = "") -> Path | None:
    """The HYPERA_CONFIG file of one (trainer, seed): ``config``'s settings (none for the trainer's own
    configuration) with ``seed``, which the trainer merges onto its variant's configuration as it does any file;
    ``config`` itself for seed 0. None for trainers without agents and for their own seed 0. The file is checked
    as the trainer will read it (merged onto the variant) before anything runs."""
    from hypera_nnunet.config import read_config_file, run_config

    if not reads_config_file(trainer) or (seed == 0 and config is None):
        return None
    if seed == 0:
        return config
    values = read_config_file(config) if config is not None else {}
    path = Path(out_dir) / "configs" / f"{display_name(trainer, variant)}_seed{seed}.json"
    atomic_write_json(path, {**values, "seed": seed})
    run_config(trainer if _is_hypera(trainer) else "HyperaTrainer", path)
    return path


VARIANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_trainer_spec(spec: str) -> tuple[str, Path | None]:
    """``TRAINER`` or ``TRAINER:CONFIG`` -> (base trainer name, config file or None), the file read (it is checked
    merged onto its trainer's configuration once the protocol has named the trainer)."""
    from hypera_nnunet.config import read_config_file

    base, sep, cfg = spec.partition(":")
    if not sep:
        return spec, None
    path = Path(cfg)
    if not base or not cfg:
        raise HyperaError(f"--trainers '{spec}': write TRAINER:CONFIG, e.g. HyperaTrainer:gs4.json.")
    if not VARIANT_NAME.match(path.stem):
        raise HyperaError(f"--trainers '{spec}': the config file's name '{path.stem}' labels the variant in reports "
                          "and folders; use letters, digits, '_', '.' and '-' only.")
    read_config_file(path)  # a missing or unparsable file fails here, naming it
    return base, path.resolve()


def _label_names(pre_dir: Path) -> dict[str, str]:
    try:
        labels = json.loads((pre_dir / "dataset.json").read_text()).get("labels", {})
    except (OSError, json.JSONDecodeError):
        return {}
    return {str(v): k for k, v in labels.items() if isinstance(v, int) and v != 0}


def run(args) -> int:
    from hypera_nnunet.env import nnunet_env, require_nnunet_folders

    folders = require_nnunet_folders()
    proto = get_protocol(args.protocol).with_budget(args.epochs, args.iters)
    if args.configuration is None:
        args.configuration = proto.configuration
    plans = args.plans or proto.plans
    device = args.device or proto.device
    concurrency = args.concurrency or proto.concurrency
    if concurrency < 1:
        raise HyperaError(f"--concurrency must be at least 1, got {concurrency}.")
    from hypera_nnunet.nnunet.names import known_trainer

    specs = [parse_trainer_spec(t) for t in args.trainers]
    runs = [(proto.trainer_name(base), cfg.stem if cfg else "", cfg) for base, cfg in specs]  # (trainer, variant, file)
    for n, variant, _ in runs:
        if n.startswith(SEEDABLE_BASELINE + "_"):
            raise HyperaError(f"unknown trainer '{n}' (from --trainers and protocol '{proto.name}'): "
                              f"{SEEDABLE_BASELINE} is nnU-Net's full budget; at a protocol's budget give "
                              "nnUNetTrainer, whose nnUNetTrainer_<E>epochs_<I>iters variants are seedable.")
        if n != SEEDABLE_BASELINE and not known_trainer(n):
            raise HyperaError(f"unknown trainer '{n}' (from --trainers and protocol '{proto.name}'): neither nnU-Net "
                              "nor HYPERA defines it (`hypera-nnunet trainers` lists HYPERA's).")
        if variant and not reads_config_file(n):
            raise HyperaError(f"--trainers '{n}:…': only HYPERA trainers and nnUNetTrainerConfigured read a HYPERA "
                              "config file.")
    from hypera_nnunet.config import CONFIG_ENV, run_config, variant_config

    for n, _, cfg in runs:  # each HYPERA run's configuration as its trainer will read it (a file merged onto it)
        if cfg is not None:
            run_config(n if _is_hypera(n) else "HyperaTrainer", cfg)  # Configured: the same file format
        elif _is_hypera(n):
            variant_config(n)
    seeded = not args.unseeded
    from hypera_nnunet.nnunet.seeding import SEED_ENV

    if seeded:
        bad = [s for s in args.seeds if not 0 <= s < 2**32]
        if bad:
            raise HyperaError(f"--seeds {bad[0]}: {SEED_ENV} takes seeds in [0, 2^32).")
        for n, _, _ in runs:
            if not seedable(n):
                print(unseedable_warning(n), file=sys.stderr, flush=True)
    names = [display_name(n, v) for n, v, _ in runs]
    if len(set(names)) != len(names):
        raise HyperaError(f"--trainers gives two runs one name: {names} (a trainer listed twice, or two config files "
                          "with one file name).")
    dataset = _dataset_name(args.dataset, folders["nnUNet_preprocessed"])
    pre_dir = folders["nnUNet_preprocessed"] / dataset
    _ensure_plans(pre_dir, plans, args.configuration, proto)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with _harness_lock(out, args):
        root = folders["nnUNet_results"]
        jobs = [Job(dataset, args.configuration, f, t, plans, s, results_root_for_seed(root, s, v, seeded),
                    variant=v)
                for s in args.seeds for f in args.folds for t, v, _ in runs]
        base_env = nnunet_env(dict(proto.env))
        if seeded:  # HYPERA_SEED seeds the agents too: a variant's file as it is, no seed files
            seed_cfg = {(t, v, s): cfg for t, v, cfg in runs for s in args.seeds}
        else:
            seed_cfg = {(t, v, s): _seed_config_file(t, s, out, cfg, v) for t, v, cfg in runs for s in args.seeds}

        def env_for(job: Job) -> dict[str, str]:
            env = dict(base_env)
            env["nnUNet_results"] = str(job.results_root)
            cfg = seed_cfg.get((job.trainer, job.variant, job.seed))
            if cfg is not None:
                env[CONFIG_ENV] = str(cfg)
            else:  # a run is its trainer's own configuration, whatever this shell's HYPERA_CONFIG says
                env.pop(CONFIG_ENV, None)
            if seeded:  # every trainer of one (fold, seed) gets the same seed: common random numbers
                env[SEED_ENV] = str(job.seed)
            else:  # nor does a shell's HYPERA_SEED reach an unseeded run
                env.pop(SEED_ENV, None)
            return env

        command = "hypera-nnunet benchmark " + shlex.join(sys.argv[2:] if args.argv is None else args.argv)
        print(f"benchmark {dataset} {args.configuration}, protocol {proto.name}: {len(jobs)} trainings "
              f"({len(args.seeds)} seed(s) x {len(args.folds)} fold(s) x {len(names)} trainer(s)), "
              f"{concurrency} at a time, device {device}; trainers {names}; "
              + (f"seeded ({SEED_ENV}={', '.join(map(str, args.seeds))})" if seeded else "unseeded repetitions"))
        records = []
        if not args.report_only:
            records = _run_with_limit(jobs, device, env_for, out, concurrency, args.npz, proto.epochs, args.time_limit,
                                      args.dry_run)
            if args.dry_run:
                return 0
            if args.test_folder is not None:
                _predict_test(args, dataset, runs, plans, device, base_env, out, root, seeded)
        extra = _refinements(args.refine, jobs, pre_dir, plans, base_env, out, execute=not args.report_only)
        return write_report(jobs, names[0], dataset, args, proto, plans, pre_dir, out, command, records, extra)


def _harness_lock(out: Path, args):
    """The output folder's lock for this process's lifetime; a dry run or a report-only call trains nothing and
    writes only atomically, so it runs beside a harness that holds the lock."""
    if args.dry_run or args.report_only:
        return nullcontext()
    return FolderLock(out, "this benchmark's output folder")


PLACEHOLDERS = ("{input}", "{output}", "{trainer}", "{fold}")


def _refinements(specs: list[str], jobs: list[Job], pre_dir: Path, plans: str, env: dict, out: Path,
                 execute: bool) -> list[tuple[str, str, int, int, Path]]:
    """Run each ``NAME=COMMAND`` on every finished fold (skipping folds already scored), return report rows."""
    from hypera_nnunet.benchmark import children
    from hypera_nnunet.data import run_nnunet

    rows = []
    for spec in specs:
        name, sep, template = spec.partition("=")
        name = name.strip()
        if not sep or not name or not template.strip() or "/" in name or "+" in name:
            raise HyperaError(f"--refine '{spec}' must be NAME=COMMAND with a plain NAME (COMMAND may use "
                              f"{', '.join(PLACEHOLDERS)}).")
        for j in jobs:
            folder = out / "refined" / name / j.name / f"seed{j.seed}_fold{j.fold}"
            rows.append((f"{j.name}+{name}", j.name, j.seed, j.fold, folder))
            dst = folder / "validation"
            if not execute or j.state() != "done" or (dst / "summary.json").is_file():
                continue
            dst.mkdir(parents=True, exist_ok=True)
            cmd = template
            for key, value in (("{input}", shlex.quote(str(j.output_folder / "validation"))),
                               ("{output}", shlex.quote(str(dst))), ("{trainer}", j.trainer), ("{fold}", str(j.fold))):
                cmd = cmd.replace(key, value)
            log = out / "logs" / f"refine_{name}_{j.name}_fold{j.fold}_seed{j.seed}.log"
            print(f"refine '{name}' {j.label}: {cmd}", flush=True)
            with open(log, "a") as f:
                child = children.start(["/bin/sh", "-c", cmd], env, f)
                try:
                    rc = child.wait()
                finally:
                    child.stop(grace_s=10)
            if rc != 0:
                raise HyperaError(f"refinement '{name}' failed for {j.label} with exit code {rc}; see {log}.")
            run_nnunet(["nnUNetv2_evaluate_folder", str(pre_dir / "gt_segmentations"), str(dst), "-djfile",
                        str(pre_dir / "dataset.json"), "-pfile", str(pre_dir / f"{plans}.json"), "-o",
                        str(dst / "summary.json"), "-np", "1", "--chill"], env=env, log=log)
    return rows


def _run_with_limit(jobs, device, env_for, out, concurrency, npz, epochs, time_limit, dry_run):
    if time_limit is None:
        return run_jobs(jobs, device, env_for, out, concurrency=concurrency, npz=npz, epochs_total=epochs,
                        dry_run=dry_run)

    def _alarm(signum, frame):
        raise TimeoutError

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        return run_jobs(jobs, device, env_for, out, concurrency=concurrency, npz=npz, epochs_total=epochs,
                        dry_run=dry_run)
    except TimeoutError:
        print(f"time limit of {time_limit:.0f} s reached: the running trainings were stopped (they continue with "
              "--c on the next call)", flush=True)
        return []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _predict_test(args, dataset, runs, plans, device, env, out, results_root, seeded=False) -> None:
    """Predict ``--test-folder`` with each trainer's folds of the first seed (and score them with ``--test-labels``)."""
    from hypera_nnunet.data import run_nnunet

    if not Path(args.test_folder).is_dir():
        raise HyperaError(f"--test-folder {args.test_folder} is not a folder.")
    for t, variant, _ in runs:
        name = display_name(t, variant)
        dst = out / "test_predictions" / name
        env = dict(env, nnUNet_results=str(results_root_for_seed(results_root, args.seeds[0], variant, seeded)))
        cmd = ["nnUNetv2_predict", "-i", str(args.test_folder), "-o", str(dst), "-d", dataset, "-c", args.configuration,
               "-tr", t, "-p", plans, "-f", *map(str, args.folds), "-device", device]
        if device == "cpu":
            cmd += ["-npp", "0", "-nps", "0"]
        print(f"predict test folder with {name}: {' '.join(cmd)}", flush=True)
        run_nnunet(cmd, env=env, log=out / "logs" / f"predict_{name}.log")
        if args.test_labels is not None:
            pre = Path(env.get("nnUNet_preprocessed", os.environ.get("nnUNet_preprocessed", ""))) / dataset
            run_nnunet(["nnUNetv2_evaluate_folder", str(args.test_labels), str(dst), "-djfile",
                        str(pre / "dataset.json"), "-pfile", str(pre / f"{plans}.json")], env=env,
                       log=out / "logs" / f"predict_{name}.log")


def write_report(jobs, baseline, dataset, args, proto, plans, pre_dir, out, command, records, extra=()) -> int:
    from hypera_nnunet.benchmark.report import build_results, environment, render_markdown, write_plots

    runs = []
    rp = out / "runs.jsonl"
    if rp.is_file():
        runs = [json.loads(line) for line in rp.read_text().splitlines() if line.strip()]
    from hypera_nnunet.nnunet.seeding import SEED_ENV
    from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM

    tolerance = DEFAULT_NSD_TOLERANCE_MM if args.nsd_tolerance is None else args.nsd_tolerance
    results, folds = build_results(jobs, baseline, _label_names(pre_dir), out, surface_metrics=not args.no_surface,
                                   n_boot=args.bootstrap, tolerance_mm=tolerance, extra_runs=list(extra),
                                   commands=runs)
    for line in results.get("refused_pairings", []):
        print(f"hypera-nnunet: {line}", file=sys.stderr)
    seeded = not getattr(args, "unseeded", False)
    trainers = sorted({j.trainer for j in jobs})
    plots = write_plots(folds, out)
    test = {}
    for t in results["trainers"]:
        s = out / "test_predictions" / t / "summary.json"
        if s.is_file():
            test[t] = json.loads(s.read_text()).get("mean")
    meta = {"dataset": dataset, "configuration": args.configuration, "protocol": proto.to_dict(), "plans": plans,
            "folds": args.folds, "seeds": args.seeds, "command": command,
            # what the harness asked for; what each run really did is per_trainer.<t>.hypera_seed (from its files)
            "seeding": {"seeded": seeded, "variable": SEED_ENV if seeded else None,
                        "seeds": list(args.seeds) if seeded else [],
                        "unseedable_trainers": [t for t in trainers if not seedable(t)] if seeded else []},
            "generated_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "environment": environment(),
            "plots": plots, "runs": runs}
    results = {"meta": meta, **results, "test": test}
    atomic_write_json(out / "results.json", results, indent=1)
    atomic_write_text(out / "report.md", render_markdown(results, meta))
    done = sum(1 for j in jobs if j.state() == "done")
    print(f"report: {out / 'report.md'} ({done}/{len(jobs)} trainings finished; raw numbers in {out / 'results.json'})")
    failed = [r for r in records if r.get("returncode") not in (None, 0)]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hypera-nnunet benchmark", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_cli(args)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through run_jobs, which stops the trainings it started


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` for the duration (SIGINT raises KeyboardInterrupt
    already), so ``finally`` blocks run: the runner's stops the trainings' process groups."""
    old = {s: signal.signal(s, _exit_on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def run_cli(args) -> int:
    """``run`` with HyperaError as one line (exit 2), and SIGTERM, SIGHUP and Ctrl-C stopping the trainings this
    process started (exit 128 + the signal)."""
    try:
        with stop_on_signals():
            return run(args)
    except HyperaError as e:
        print(f"hypera-nnunet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hypera-nnunet: interrupted; the trainings were stopped (they continue with --c next time)",
              file=sys.stderr)
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
