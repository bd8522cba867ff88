"""``hypera-nnunet agents info|train|add-baseline``: the experience store from the command line.

    hypera-nnunet agents info --store STORE                      # runs, transitions per agent, baselines
    hypera-nnunet agents add-baseline --store STORE FOLD_DIR ... # seeded nnUNetTrainer folds made before it
    hypera-nnunet agents train --store STORE --updates 2000      # offline SAC, pooled buffer -> STORE/policies.pt

A run writes to the store when its configuration names one (``store: STORE``) or ``HYPERA_STORE=STORE`` is set
(seeded ``nnUNetTrainer_<E>epochs_<I>iters`` runs write their curve then too). A later run starts from the trained
policies with ``transfer: {source: STORE, mode: warm_start}`` (the buffers are refilled from the store too) or
``mode: frozen``; ``reward: {counterfactual: true}`` rewards it against the seeded baseline of its fold and seed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _store(args):
    from hypera_nnunet.errors import HyperaError
    from hypera_nnunet.store import ExperienceStore

    if not (Path(args.store) / "store.json").is_file() and args.agents_cmd != "add-baseline":
        raise HyperaError(f"{args.store}: not an experience store (no store.json)")
    return ExperienceStore(args.store)


def _cmd_info(args) -> int:
    print(_store(args).describe())
    return 0


def _cmd_add_baseline(args) -> int:
    from hypera_nnunet.nnunet.experience import identity_of_fold, outcome_of

    store = _store(args)
    for folder in args.folds:
        identity, curve = identity_of_fold(Path(folder))
        if identity["seed"] is None:
            print(f"{folder}: skipped: not a seeded run (no HYPERA_SEED), so no run can share its random numbers")
            continue
        path = store.write_baseline(identity, curve, outcome_of(Path(folder)), str(Path(folder).resolve()))
        print(f"{folder}: baseline {path.stem} (fold {identity['fold']}, seed {identity['seed']}, "
              f"{len(curve)} epochs)")
    return 0


def _cmd_train(args) -> int:
    from hypera_nnunet.common.atomic_io import atomic_torch_save
    from hypera_nnunet.config import config_from_dict, load_config
    from hypera_nnunet.control.offline import train_offline

    store = _store(args)
    cfg = load_config(args.config) if args.config else config_from_dict(
        {"agents": {a: {} for a in args.agents}} if args.agents else _agents_in(store))
    policies, report = train_offline(store, cfg, args.updates, args.reward, args.seed)
    out = Path(args.out) if args.out else store.root / "policies.pt"
    atomic_torch_save(policies, out)
    print(json.dumps(report, indent=1))
    print(f"policies: {out}")
    return 0


def _agents_in(store) -> dict:
    names = sorted({a for r in store.runs() for a in r.transitions})
    return {"agents": {a: {} for a in names}} if names else {}


def run_cli(args) -> int:
    return {"info": _cmd_info, "train": _cmd_train, "add-baseline": _cmd_add_baseline}[args.agents_cmd](args)


def register(subparsers) -> argparse.ArgumentParser:
    """Add ``agents`` to the ``hypera-nnunet`` subcommands (``func`` returns the exit code)."""
    p = subparsers.add_parser("agents", help="the experience store: info, add-baseline, offline training",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="agents_cmd", required=True)
    i = sub.add_parser("info", help="what a store holds")
    i.add_argument("--store", required=True)
    b = sub.add_parser("add-baseline", help="add finished seeded nnUNetTrainer folds' curves to a store")
    b.add_argument("--store", required=True)
    b.add_argument("folds", nargs="+", help="fold_X folders of finished seeded baseline runs")
    t = sub.add_parser("train", help="offline SAC updates on the store's pooled transitions; writes policies.pt")
    t.add_argument("--store", required=True)
    t.add_argument("--config", default=None, help="a HYPERA config file (its agents and learning settings)")
    t.add_argument("--agents", nargs="+", default=None, help="agents to train (default: every agent in the store)")
    t.add_argument("--updates", type=int, default=2000, help="SAC updates per agent (default 2000)")
    t.add_argument("--reward", default="stored", choices=("stored", "terminal"),
                   help="stored rewards, or plus each run's final Dice minus its baseline's, spread over the run")
    t.add_argument("--seed", type=int, default=0, help="the agents' generators (default 0)")
    t.add_argument("--out", default=None, help="where to write the policies (default STORE/policies.pt)")
    for q in (i, b, t):
        q.set_defaults(func=run_cli)
    p.set_defaults(func=run_cli)
    return p
