"""``hypera-nnunet search run|status|best|export``: hyperparameter search over whole nnU-Net trainings (Optuna).

  hypera-nnunet search run SPACE.yaml --study FOLDER [-n 20] [-j 1] [--sampler tpe|random|qmc|ensemble|hierarchical]
                                      [--pruner hyperband|median|curve|none] [--seed S]
  hypera-nnunet search status FOLDER [--json]
  hypera-nnunet search best FOLDER [--json]
  hypera-nnunet search export FOLDER -o best.json

``run`` starts a study or continues one (a killed study resumes: finished trials are kept, and a trial whose worker
died continues from its checkpoint). ``-n`` is the study's total number of trials; ``-j N`` runs N worker processes
on the one journal. ``export`` writes the best trial's configuration without the search's budget, for
``HYPERA_CONFIG=best.json nnUNetv2_train ... -tr <trainer>`` and ``hypera-nnunet benchmark -tr <trainer>:best.json``.
The space file's format: :mod:`hypera_nnunet.search.space`; the study folder: :mod:`hypera_nnunet.search.study`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from hypera_nnunet.errors import HyperaError


def _print(line: str) -> None:
    print(f"search: {line}", flush=True)


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="start or continue a study")
    p.add_argument("space", type=Path, help="search space file (YAML or JSON)")
    p.add_argument("--study", type=Path, required=True, help="the study folder (journal, trials)")
    p.add_argument("-n", "--n-trials", type=int, default=20, help="trials in the study in all (default 20)")
    p.add_argument("-j", "--jobs", type=int, default=1, help="worker processes sharing the journal (default 1)")
    p.add_argument("--sampler", default=None, help="tpe (default), random, qmc, ensemble (deep-ensemble BO) or "
                                                   "hierarchical (manager/worker)")
    p.add_argument("--pruner", default=None,
                   help="hyperband (default), median, curve (learning-curve extrapolation) or none")
    p.add_argument("--seed", type=int, default=None, help="the sampler's seed (worker i uses seed + i)")
    p.add_argument("--budget-epochs", type=int, default=None,
                   help="the study's total budget in epochs: no trial starts once it is spent, and the trial that "
                        "spends it stops there (default: none; -n alone limits the study)")
    p.add_argument("--transfer-from", nargs="+", type=Path, metavar="STUDY",
                   help="warm-start a new study from the most similar of these finished studies (by nnU-Net's "
                        "dataset fingerprint): their best trials are queued first")
    p.add_argument("--transfer-top", type=int, default=5, help="trials queued from the source (default 5)")
    p.add_argument("--backend", choices=("optuna", "ray"), default="optuna",
                   help="optuna (default: one machine, a journal file) or ray (Ray Tune: ASHA or PBT, local or a "
                        "cluster)")
    p.add_argument("--scheduler", choices=("asha", "pbt"), default="asha", help="Ray's trial scheduler (default asha)")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (default: start a local Ray)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="Ray: CPUs per trial (default 1; one GPU per "
                                                                     "trial where the cluster has GPUs)")
    p.add_argument("--perturbation-interval", type=int, default=None,
                   help="PBT: epochs between exploit/explore steps (default: the space's min_epochs)")


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``search`` to the ``hypera-nnunet`` subcommands."""
    p = subparsers.add_parser("search", help="hyperparameter search over whole trainings (Optuna)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="search_command", required=True)
    _add_run(sub)
    for name, what in (("status", "trials, states, best value, budget spent"), ("best", "the best trial")):
        q = sub.add_parser(name, help=what)
        q.add_argument("study", type=Path)
        q.add_argument("--json", action="store_true", help="print JSON")
    e = sub.add_parser("export", help="write the best configuration (HYPERA_CONFIG format, no budget)")
    e.add_argument("study", type=Path)
    e.add_argument("-o", "--output", type=Path, required=True, help="file to write (.json, .yaml)")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)  # one of `run -j N`'s processes
    w.add_argument("study", type=Path)
    w.add_argument("-n", "--n-trials", type=int, required=True)
    w.add_argument("--worker", type=int, required=True)
    p.set_defaults(func=run_cli)
    return p


def _run(args) -> int:
    from hypera_nnunet.config import read_config_file
    from hypera_nnunet.search.space import parse_space
    from hypera_nnunet.search.study import create_or_check, require_optuna, run_worker, summary

    if args.backend == "optuna":
        require_optuna()
    if args.n_trials < 1 or args.jobs < 1:
        raise HyperaError(f"-n and -j must be at least 1, got -n {args.n_trials} -j {args.jobs}")
    values = read_config_file(args.space)
    space = parse_space(values, str(args.space))
    if args.backend == "ray":
        if args.transfer_from or args.budget_epochs:
            raise HyperaError("--transfer-from and --budget-epochs work with the optuna backend only")
        return _run_ray(args, values, space)
    create_or_check(args.study, values, str(args.space), args.sampler, args.pruner, args.seed,
                    budget_epochs=args.budget_epochs)
    if args.transfer_from:
        from hypera_nnunet.search.study import transfer_into

        t = transfer_into(args.study, args.transfer_from, args.transfer_top)
        sim = "no fingerprint" if t["similarity"] is None else f"similarity {t['similarity']:.3f}"
        _print(f"warm start from {t['source']} ({sim}): {len(t['queued'])} trial(s) queued")
    if space.objective == "nnunet" and space.device == "cpu" and args.jobs > 1:
        _print(f"warning: -j {args.jobs} nnU-Net trainings at once on the CPU share its cores (each is slower)")
    _print(f"study {args.study}: {space.objective} objective, trainer {space.trainer}, {len(space.params)} "
           f"parameter(s), epochs {space.min_epochs}..{space.max_epochs}, {args.n_trials} trial(s), {args.jobs} "
           "worker(s)")
    others = [subprocess.Popen([sys.executable, "-m", "hypera_nnunet.cli", "search", "worker", str(args.study),
                                "-n", str(args.n_trials), "--worker", str(i)]) for i in range(1, args.jobs)]
    try:
        run_worker(args.study, args.n_trials, worker=0, progress=sys.stderr.isatty() and args.jobs == 1,
                   on_trial=_print)
    finally:
        codes = [p.wait() for p in others]
    _print_status(summary(args.study))
    bad = [c for c in codes if c != 0]
    return 1 if bad else 0


def _run_ray(args, values: dict, space) -> int:
    from hypera_nnunet.search.ray_backend import require_ray, run_ray
    from hypera_nnunet.search.study import create_or_check, summary

    require_ray()
    create_or_check(args.study, values, str(args.space), None, args.scheduler, args.seed, backend="ray")
    _print(f"study {args.study}: Ray Tune, {args.scheduler}, {space.objective} objective, trainer {space.trainer}, "
           f"{args.n_trials} trial(s)" + (f", cluster {args.ray_address}" if args.ray_address else ", local Ray"))
    run_ray(space, args.study, args.n_trials, scheduler=args.scheduler, seed=args.seed, address=args.ray_address,
            cpus_per_trial=args.cpus_per_trial, perturbation_interval=args.perturbation_interval)
    _print_status(summary(args.study))
    return 0


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_status(s: dict) -> None:
    print(f"study {s['study']} ({s['backend']}: {s['sampler']}, {s['pruner']}): {s['trials']} trial(s) "
          + ", ".join(f"{n} {k.lower()}" for k, n in sorted(s["states"].items())))
    print(f"{'#':>4} {'state':<9} {'value':>7} {'epochs':>6}  parameters / note")
    for r in s["rows"]:
        value = "" if r["value"] is None else f"{r['value']:.4f}"
        note = ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items())
        if r["stale"]:
            note += "  [worker died; queued again to resume]"
        if r["resume_of"]:
            note += f"  [resumes trials/{r['resume_of']}]"
        if r["error"]:
            note += f"  [{r['error']}]"
        print(f"{r['number']:>4} {r['state']:<9} {value:>7} {int(r['epochs'] or 0):>6}  {note}")
    b = s["best"]
    print("best: " + ("none yet" if b is None else f"trial {b['number']}, value {b['value']:.4f}"))
    print(f"budget spent: {s['epochs_spent']} epochs = {s['full_trainings_spent']:.2f} full trainings of "
          f"{s['max_epochs']} epochs" + (f" (budget {s['budget_epochs']} epochs)" if s.get("budget_epochs") else ""))


def run_cli(args) -> int:
    from hypera_nnunet.search.study import export_best, run_worker, summary

    cmd = args.search_command
    if cmd == "run":
        return _run(args)
    if cmd == "worker":
        run_worker(args.study, args.n_trials, worker=args.worker, on_trial=_print)
        return 0
    if cmd == "status":
        s = summary(args.study)
        if args.json:
            print(json.dumps(s, indent=2, default=str))
        else:
            _print_status(s)
        return 0
    if cmd == "best":
        s = summary(args.study)
        if s["best"] is None:
            raise HyperaError(f"study {args.study} has no completed trial yet ({s['trials']} trial(s))")
        if args.json:
            print(json.dumps(s["best"], indent=2, default=str))
        else:
            b = s["best"]
            print(f"trial {b['number']}: {b['value']:.4f}")
            for k, v in b["params"].items():
                print(f"  {k}: {v}")
        return 0
    if cmd == "export":
        r = export_best(args.study, args.output)
        print(f"wrote {r['file']}: trial {r['trial']} (value {r['value']:.4f}), trainer {r['trainer']}")
        print(f"  HYPERA_CONFIG={r['file']} nnUNetv2_train DATASET CONFIGURATION FOLD -tr {r['trainer']}")
        print(f"  hypera-nnunet benchmark -d DATASET -tr nnUNetTrainer {r['trainer']}:{r['file']}")
        return 0
    raise HyperaError(f"unknown search command {cmd!r}")
