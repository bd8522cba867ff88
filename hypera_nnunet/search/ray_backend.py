"""``hypera-nnunet search run --backend ray``: the same objectives as Ray Tune trainables, with ASHA or PBT.

* **The trainable** is the space's objective (:mod:`.objectives`) in a Ray actor: one trial = one folder
  ``STUDY/ray_trials/<trial id>/`` with its configuration, log and nnU-Net results, as in the Optuna backend. Each
  epoch's pseudo-Dice EMA is ``tune.report``-ed as ``score`` with ``epoch`` as the time attribute.
* **ASHA** (``--scheduler asha``, the default): asynchronous successive halving on epochs, grace period
  ``min_epochs``, reduction factor 3 (``max_t`` = ``max_epochs`` + 1, so that reaching the last epoch does not stop a
  trial before its validation). A stopped trial's actor ends, and with it the
  training's process group (the objective's watchdog, :mod:`hypera_nnunet.benchmark.children`).
* **PBT** (``--scheduler pbt``): every ``perturbation_interval`` epochs the report carries a checkpoint of the
  trial (:data:`.objectives.SNAPSHOTS`: nnU-Net's ``checkpoint_latest.pth``, the generator states beside it and
  ``epochs.jsonl``; the search has nnU-Net write one every epoch; Ray keeps them all). Every
  ``perturbation_interval`` epochs, once every member has got there (synchronous PBT: with a small population the
  asynchronous variant often finds no upper member with a checkpoint yet), the lower half *exploits*: Ray
  restarts it from an upper member's checkpoint, which this trainable copies into its own folder before
  ``nnUNetv2_train --c`` continues from it; and *explores*: its hyperparameters are resampled or perturbed (x0.8,
  x1.2) within the space, which the continued training reads from its new ``config.json`` (nnU-Net's optimizer
  state from the checkpoint gets this trial's momentum and weight decay again). Which checkpoint a trial started
  from is recorded in its ``lineage.json``. ``--seed`` seeds the trials' first values; Ray's PBT draws its
  perturbations from Python's global ``random`` (it takes no seed), which this backend leaves alone, so a PBT run
  is not reproducible.
* **Resources**: ``--cpus-per-trial`` (default 1) and one GPU per trial where the cluster has GPUs
  (``tune.with_resources``); ``--ray-address`` joins a running cluster (``ray start --head`` there), else a local
  Ray is started with the machine's CPUs.

Results: ``STUDY/ray_results.json`` (every trial's configuration, last score, epochs, state; the best trial), which
``search status|best|export`` read like an Optuna study. Ray is the optional extra ``[ray]``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.search.objectives import OBJECTIVES, SNAPSHOTS, Pruned, TrialRun
from hypera_nnunet.search.space import SearchSpace

RESULTS_FILE = "ray_results.json"
TRIALS_DIR = "ray_trials"
EPOCH_FILE = "ray_epoch.json"  # in a checkpoint: the last epoch reported before it
LINEAGE_FILE = "lineage.json"
SCHEDULERS = ("asha", "pbt")
EXTRA = "ray"


def require_ray():
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise HyperaError(f"`hypera-nnunet search --backend ray` needs Ray Tune: pip install 'hypera-nnunet[{EXTRA}]' "
                          "(or pip install 'ray[tune]')") from None
    return ray


def tune_space(space: SearchSpace) -> dict[str, Any]:
    """The space's parameters as Ray Tune distributions (same ranges, scales and steps)."""
    from ray import tune

    out: dict[str, Any] = {}
    for p in space.params:
        if p.kind == "categorical":
            out[p.key] = tune.choice(list(p.choices))
        elif p.kind == "int":
            step = int(p.step or 1)
            out[p.key] = (tune.lograndint(int(p.low), int(p.high) + 1) if p.log
                          else tune.qrandint(int(p.low), int(p.high), step))
        elif p.log:
            out[p.key] = tune.loguniform(float(p.low), float(p.high))
        elif p.step:
            out[p.key] = tune.quniform(float(p.low), float(p.high), float(p.step))
        else:
            out[p.key] = tune.uniform(float(p.low), float(p.high))
    return out


def _clip(space: SearchSpace, values: dict) -> dict:
    """PBT's perturbation multiplies by 0.8/1.2, which can leave a range: clip (and round ints) back into it."""
    out = dict(values)
    for p in space.params:
        v = out.get(p.key)
        if v is None or p.kind == "categorical":
            continue
        v = min(max(v, p.low), p.high)
        out[p.key] = int(round(v)) if p.kind == "int" else float(v)
    return out


def trial_number(trial_id: str) -> int:
    """Ray's trial ids end in the trial's index (``a1b2c_00003`` -> 3)."""
    tail = str(trial_id).rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


#: the driver's variables a trial needs (nnU-Net's folders and CPU settings): Ray's workers may have been started
#: with another environment (a cluster's nodes, or a Ray started before they were set)
PASSED_ENV = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_n_proc_DA",
              "nnUNet_def_n_proc", "nnUNet_compile", "HYPERA_CURVE_EPOCH_S")


def make_trainable(space: SearchSpace, study: Path, checkpoints: int, env: dict[str, str] | None = None):
    """The function trainable: restore a checkpoint when Ray gives one (PBT's exploit), run the objective,
    report every epoch, with a checkpoint every ``checkpoints`` epochs (0: none; PBT: its perturbation interval).
    ``env`` is set in the worker first."""
    objective = OBJECTIVES[space.objective]
    snapshot, restore = SNAPSHOTS[space.objective]
    env = dict(env or {})

    def trainable(config: dict) -> None:
        from ray import tune

        os.environ.update(env)

        ctx = tune.get_context()
        trial_id = ctx.get_trial_id()
        folder = Path(study) / TRIALS_DIR / trial_id
        folder.mkdir(parents=True, exist_ok=True)
        values = _clip(space, {p.key: config[p.key] for p in space.params})
        last = 0
        ckpt = tune.get_checkpoint()
        lineage = json.loads((folder / LINEAGE_FILE).read_text()) if (folder / LINEAGE_FILE).is_file() else []
        if ckpt is not None:
            with ckpt.as_directory() as d:
                d = Path(d)
                restore(space, folder, d)
                meta = json.loads((d / EPOCH_FILE).read_text()) if (d / EPOCH_FILE).is_file() else {}
                last = int(meta.get("epoch", 0))
                # PBT's exploit restores another member's checkpoint; Ray also restores a paused trial from its own
                lineage.append({"restored_from_trial": meta.get("trial"), "epoch": last, "values": values,
                                "exploit": meta.get("trial") != trial_id})
                atomic_write_json(folder / LINEAGE_FILE, lineage)

        def report(epoch: int, value: float) -> bool:
            nonlocal last
            if epoch <= last:  # a continued training re-reads the epochs before its checkpoint
                return False
            last = epoch
            metrics = {"score": float(value), "epoch": int(epoch)}
            if not checkpoints or epoch % checkpoints:
                tune.report(metrics)
                return False
            with tempfile.TemporaryDirectory() as tmp:
                snapshot(space, folder, Path(tmp))
                atomic_write_json(Path(tmp) / EPOCH_FILE, {"epoch": epoch, "trial": trial_id})
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))
            return False

        try:
            value = objective(space, TrialRun(trial_number(trial_id), values, folder, report))
        except Pruned:
            return
        # the final value at the last epoch's time: ASHA (max_t = max_epochs + 1) and PBT take no decision on it
        tune.report({"score": float(value), "epoch": space.max_epochs, "final": float(value)})

    return trainable


def run_ray(space: SearchSpace, study: Path, n_trials: int, scheduler: str = "asha", seed: int | None = None,
            address: str | None = None, cpus_per_trial: float = 1.0, num_cpus: int | None = None,
            perturbation_interval: int | None = None) -> dict:
    """Run the study on Ray Tune and write ``ray_results.json``; returns its content."""
    ray = require_ray()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    if scheduler not in SCHEDULERS:
        raise HyperaError(f"unknown Ray scheduler '{scheduler}' (choose from {', '.join(SCHEDULERS)})")
    study = Path(study).resolve()
    study.mkdir(parents=True, exist_ok=True)
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    elif not ray.is_initialized():
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False, configure_logging=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    dists = tune_space(space)
    interval = max(1, perturbation_interval or space.min_epochs)
    if scheduler == "asha":
        sched = ASHAScheduler(time_attr="epoch", metric="score", mode="max", max_t=space.max_epochs + 1,
                              grace_period=space.min_epochs, reduction_factor=3)
    else:
        sched = PopulationBasedTraining(time_attr="epoch", metric="score", mode="max",
                                        perturbation_interval=interval,
                                        hyperparam_mutations=dists, quantile_fraction=0.5, resample_probability=0.25,
                                        synch=True)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    trainable = tune.with_resources(make_trainable(space, study, checkpoints=interval if scheduler == "pbt" else 0,
                                                   env=env),
                                    {"cpu": cpus_per_trial, "gpu": gpus})
    from ray.tune.search.basic_variant import BasicVariantGenerator

    tuner = tune.Tuner(trainable, param_space=dists,
                       tune_config=tune.TuneConfig(scheduler=sched, num_samples=n_trials,
                                                   search_alg=BasicVariantGenerator(random_state=seed)),
                       run_config=tune.RunConfig(name="ray", storage_path=str(study / "ray_storage"), verbose=0,
                                                 # every checkpoint is kept: a member may still be restoring
                                                 # from a donor's older one (PBT's exploit is asynchronous)
                                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=None)))
    grid = tuner.fit()
    rows = []
    for i, r in enumerate(grid):
        m = r.metrics or {}
        tid = m.get("trial_id") or (r.path and Path(r.path).name) or str(i)
        folder = study / TRIALS_DIR / str(tid)
        lineage = json.loads((folder / LINEAGE_FILE).read_text()) if (folder / LINEAGE_FILE).is_file() else []
        finished = "final" in m
        rows.append({"number": i, "trial_id": tid, "state": "COMPLETE" if finished else
                     ("FAIL" if r.error else "PRUNED"), "value": m.get("final") if finished else None,
                     "last_score": m.get("score"), "epochs": min(int(m.get("epoch", 0) or 0), space.max_epochs),
                     "params": _clip(space, {p.key: (r.config or {}).get(p.key) for p in space.params}),
                     "folder": str(folder.relative_to(study)), "error": None if r.error is None else str(r.error),
                     "lineage": lineage})
    done = [x for x in rows if x["state"] == "COMPLETE"]
    out = {"backend": "ray", "scheduler": scheduler, "gpus_per_trial": gpus, "cpus_per_trial": cpus_per_trial,
           "trials": rows, "best": max(done, key=lambda x: x["value"]) if done else None}
    atomic_write_json(study / RESULTS_FILE, out)
    return out
