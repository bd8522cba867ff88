"""Run-level comparison of configurations whose runs sit in different benchmark ``results.json`` files.

New runs of several configurations of one trainer can share one report (``-tr HyperaTrainer
HyperaTrainer:gs4.json``, see docs/benchmark_protocol.md); runs made before that option, or by separate
commands, sit in separate ``results.json`` files, with the same trainer name. This reads each run's
per-fold Dice from the given files, pairs runs by (seed, fold) and applies the harness's own paired
test (:func:`hypera_nnunet.benchmark.stats.paired_test`: bootstrap CI, sign-flip permutation test (the primary
p), paired t-test, two-sided Wilcoxon). Like the harness it refuses to pair runs that were not seeded alike (each
run's ``HYPERA_SEED`` from ``per_trainer.<trainer>.hypera_seed``; files from before seeding: unseeded):

    python benchmarks/compare_runs.py --out docs/bench/cpu_v2_gradient_steps.json \\
      --config nnUNetTrainer=docs/bench/cpu_v2_2seeds_results.json:nnUNetTrainer_50epochs_25iters \\
      --config gs8=docs/bench/cpu_v2_results.json:HyperaTrainer_50epochs_25iters \\
      --config gs8=docs/bench/cpu_v2_gs8_seed1_results.json:HyperaTrainer_50epochs_25iters@seed1 \\
      --config gs4=docs/bench/cpu_v2_2seeds_results.json:HyperaTrainer_50epochs_25iters

``label=file:trainer[@seedS]``: the runs of ``trainer`` in ``file``; ``@seedS`` relabels them as seed S (for
runs whose seed was set in ``HYPERA_CONFIG`` and therefore appear as seed 0 in their own report). The same
label may be given several times to gather runs from several files. Every pair of labels is compared, on
the runs both have.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hypera_nnunet.benchmark.report import fg_mean
from hypera_nnunet.benchmark.stats import paired_test
from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.io import read_json

CONVERGED = 0.8  # fold-mean foreground Dice counted as "converged" in docs/benchmarks.md


def read_runs(spec: str) -> tuple[str, dict[str, float], dict[str, int | None]]:
    label, _, rest = spec.partition("=")
    path, _, trainer = rest.rpartition(":")
    trainer, _, seed = trainer.partition("@seed")
    if not label or not path or not trainer:
        raise SystemExit(f"compare_runs: bad --config {spec!r}; expected label=file:trainer[@seedS]")
    try:
        entry = read_json(Path(path), "benchmark results")["per_trainer"][trainer]
        per_fold = entry["per_fold_dice"]
    except HyperaError as e:
        raise SystemExit(f"compare_runs: {e}") from None
    except KeyError:
        raise SystemExit(f"compare_runs: {path} has no per_fold_dice for trainer {trainer!r}") from None
    runs, seeded = {}, {}
    for run, dice in per_fold.items():  # "seed0_fold3"
        hypera_seed = (entry.get("hypera_seed") or {}).get(run)
        if seed:
            run = f"seed{int(seed)}_" + run.split("_", 1)[1]
        runs[run] = fg_mean(dice)
        seeded[run] = hypera_seed
    return label, runs, seeded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", required=True, help="label=file:trainer[@seedS]")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    configs: dict[str, dict[str, float]] = {}
    seeds: dict[str, dict[str, int | None]] = {}
    for spec in args.config:
        label, runs, seeded = read_runs(spec)
        seeds.setdefault(label, {}).update(seeded)
        clash = set(runs) & set(configs.get(label, {}))
        if clash:
            raise SystemExit(f"compare_runs: label {label!r} has run(s) {sorted(clash)} twice")
        configs.setdefault(label, {}).update(runs)
    labels = list(configs)
    res = {"command": "python benchmarks/compare_runs.py " + " ".join(f"--config {c}" for c in args.config)
               + f" --out {args.out}",
           "converged_threshold": CONVERGED,
           "runs": {k: dict(sorted(v.items())) for k, v in configs.items()},
           "converged": {k: sum(x >= CONVERGED for x in v.values()) for k, v in configs.items()},
           "paired": {}}
    for i, ref in enumerate(labels):
        for cand in labels[i + 1:]:
            keys = sorted(set(configs[ref]) & set(configs[cand]))
            unlike = [k for k in keys if seeds[ref][k] != seeds[cand][k]]
            if unlike:
                raise SystemExit(f"compare_runs: {cand} and {ref} were not seeded alike in {unlike[0]} "
                                 f"(HYPERA_SEED {seeds[cand][unlike[0]]} against {seeds[ref][unlike[0]]}); "
                                 "compare runs seeded with one HYPERA_SEED, or unseeded runs only")
            t = paired_test([configs[ref][k] for k in keys], [configs[cand][k] for k in keys])
            res["paired"][f"{cand} minus {ref}"] = {"runs": keys, **t.to_dict()}
    try:
        atomic_write_json(args.out, res)
    except HyperaError as e:
        raise SystemExit(f"compare_runs: {e}") from None
    for name, t in res["paired"].items():
        print(f"{name}: n={t['n']} mean {t['mean_diff']:+.4f} CI [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] "
              f"sign-flip p={_p(t['sign_flip_p'])} t-test p={_p(t['t_p'])} Wilcoxon p={_p(t['wilcoxon_p'])} "
              f"better/worse {t['wins']}/{t['losses']}")
    print("converged:", res["converged"])


def _p(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


if __name__ == "__main__":
    main()
