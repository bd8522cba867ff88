"""Search methods on the multi-fidelity Hartmann-6 objective: regret against trials and against compute.

Every method runs as ``hypera-nnunet search`` runs it: an Optuna study with the method's sampler and Hyperband on
epochs (min 3, max 27, reduction factor 3), the objective :func:`hypera_nnunet.search.objectives.hartmann_objective`
(the score is ``-f(x) / 3.32237``; each epoch reports a biased, noisy low-fidelity score; regret = 1 - the best
finished trial's noise-free score). ``--repeats`` independent repeats per method (sampler seed and noise seed r).
Also the deep ensemble's calibration and fit time: fitted on 30 random points, the share of 500 held-out points
whose true score lies within the ensemble's mean +- 2 member-sd, and the seconds per fit.

    python benchmarks/search_methods.py --repeats 10 --trials 40 --out docs/bench/search_methods_hartmann.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import optuna

from hypera_nnunet.search.objectives import Pruned, TrialRun, hartmann_objective, hartmann_score
from hypera_nnunet.search.space import parse_space
from hypera_nnunet.search.study import SAMPLERS

SPACE = {"objective": "hartmann", "fidelity": {"min_epochs": 3, "max_epochs": 27},
         "params": {f"x{i}": {"low": 0.0, "high": 1.0} for i in range(1, 7)}}
METHODS = ("random", "qmc", "tpe", "ensemble")
TRIAL_MARKS = (10, 20, 40)
EPOCH_MARKS = (150, 300, 600)


def run_one(method: str, repeat: int, n_trials: int) -> dict:
    space = parse_space({**SPACE, "seed": repeat}, "hartmann")
    sampler = SAMPLERS[method](space, repeat)
    pruner = optuna.pruners.HyperbandPruner(min_resource=3, max_resource=27, reduction_factor=3)
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    trace = []  # per trial: (epochs so far, best finished score so far)
    spent, best = 0, -np.inf
    t0 = time.perf_counter()

    def objective(trial) -> float:
        nonlocal spent
        values = {p.key: p.suggest(trial) for p in space.params}
        epochs = [0]

        def report(epoch: int, value: float) -> bool:
            epochs[0] = epoch
            trial.report(value, epoch)
            return trial.should_prune()

        try:
            return hartmann_objective(space, TrialRun(trial.number, values, Path("."), report))
        except Pruned:
            raise optuna.TrialPruned() from None
        finally:
            spent += epochs[0]

    def record(study_, trial_) -> None:
        nonlocal best
        if trial_.state == optuna.trial.TrialState.COMPLETE:
            best = max(best, trial_.value)
        trace.append((spent, best))

    study.optimize(objective, n_trials=n_trials, callbacks=[record])
    return {"method": method, "repeat": repeat, "seconds": time.perf_counter() - t0,
            "trace": [[e, (1 - b) if np.isfinite(b) else None] for e, b in trace]}


def _at_trials(run: dict, n: int) -> float | None:
    r = run["trace"][min(n, len(run["trace"])) - 1][1]
    return r


def _at_epochs(run: dict, e: int) -> float | None:
    ok = [r for spent, r in run["trace"] if spent <= e and r is not None]
    return ok[-1] if ok else None


def _ci(values: list[float], seed: int = 0) -> dict:
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    boots = rng.choice(v, size=(10000, len(v)), replace=True).mean(1)
    return {"mean": float(v.mean()), "ci95": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))],
            "n": int(len(v))}


def calibration(seed: int = 0) -> dict:
    from hypera_nnunet.search.ensemble_sampler import DeepEnsemble

    rng = np.random.default_rng(seed)
    x, xt = rng.random((30, 6)), rng.random((500, 6))
    y = np.array([hartmann_score(p, 1.0) for p in x])
    yt = np.array([hartmann_score(p, 1.0) for p in xt])
    t0 = time.perf_counter()
    model = DeepEnsemble(seed=seed).fit(x, y)
    fit_s = time.perf_counter() - t0
    pred = model.predict(xt)
    mu, sd = pred.mean(0), pred.std(0)
    return {"fit_seconds": fit_s, "coverage_2sd": float(np.mean(np.abs(yt - mu) <= 2 * sd)),
            "rmse": float(np.sqrt(np.mean((yt - mu) ** 2))), "mean_sd": float(sd.mean()), "n_train": 30,
            "n_test": 500}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runs = [run_one(m, r, args.trials) for m in args.methods for r in range(args.repeats)]
    table = {}
    for m in args.methods:
        mine = [r for r in runs if r["method"] == m]
        table[m] = {"regret_at_trials": {str(n): _ci([_at_trials(r, n) for r in mine]) for n in TRIAL_MARKS
                                         if n <= args.trials},
                    "regret_at_epochs": {str(e): _ci([_at_epochs(r, e) for r in mine]) for e in EPOCH_MARKS},
                    "seconds_per_trial": float(np.mean([r["seconds"] for r in mine]) / args.trials)}
    out = {"objective": "hartmann6, multi-fidelity (bias 0.15 (1 - f)(x1 - 0.5), noise 0.03 (1 - 0.9 f))",
           "pruner": "hyperband(min 3, max 27 epochs, rf 3)", "repeats": args.repeats, "trials": args.trials,
           "table": table, "ensemble_calibration": calibration(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    head = f"{'method':<9}" + "".join(f" regret@{n}tr" for n in TRIAL_MARKS if n <= args.trials) + \
        "".join(f" regret@{e}ep" for e in EPOCH_MARKS) + "  s/trial"
    print(head)
    for m, t in table.items():
        cells = [t["regret_at_trials"][str(n)] for n in TRIAL_MARKS if n <= args.trials] + \
            [t["regret_at_epochs"][str(e)] for e in EPOCH_MARKS]
        print(f"{m:<9}" + "".join(f" {c['mean']:.3f}±{(c['ci95'][1] - c['ci95'][0]) / 2:.3f}".rjust(13)
                                  if c["mean"] is not None else "          n/a" for c in cells)
              + f"  {t['seconds_per_trial']:.3f}")
    print("ensemble calibration:", json.dumps(out["ensemble_calibration"]))


if __name__ == "__main__":
    main()
