"""A search study on Optuna: a folder with a journal, the space it searches and one sub-folder per trial.

Layout of a study folder::

    study.json           sampler, pruner, seed and the space file's values (written once, when the study starts)
    journal.log          Optuna's JournalFileBackend: every trial's state, parameters and reported epochs
    trials/0007/         trial 7: config.json (its HYPERA configuration), train.log, nnUNet_results/ (its own)

Several worker processes (``-j N``, or ``search run`` started again elsewhere on the same folder) share the
journal: Optuna's journal storage appends under a file lock. Each running trial holds a lock on its folder
(:class:`hypera_nnunet.common.locks.FolderLock`: the kernel drops it when the process dies, kill -9 included), so a
trial whose state is RUNNING but whose folder lock is free belongs to a dead worker. When a worker starts it
recovers such trials: each is marked FAIL (user attribute ``stale``) and queued again with the same parameters and
``resume_of`` = its folder, so the new trial continues the training from its checkpoint in that folder
(``nnUNetv2_train --c``), instead of starting again. A trial whose training fails is FAIL with ``error`` and
``log`` (user attributes); the study goes on.

Samplers and pruners are small registered factories (Optuna's own classes), chosen by name: :data:`SAMPLERS`,
:data:`PRUNERS`. TPE with Hyperband is the default; Hyperband's resource is the epoch, from the space's
``fidelity`` (``min_epochs`` .. ``max_epochs``, reduction factor 3).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.common.locks import FolderLock
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.search.objectives import OBJECTIVES, Pruned, TrialFailed, TrialRun
from hypera_nnunet.search.space import SearchSpace, parse_space

STUDY_FILE = "study.json"
JOURNAL_FILE = "journal.log"
TRIALS_DIR = "trials"
STUDY_NAME = "hypera"
EXTRA = "search"  # pip install 'hypera-nnunet[search]'


def require_optuna():
    """The optuna module, or one line naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise HyperaError(f"`hypera-nnunet search` needs Optuna: pip install 'hypera-nnunet[{EXTRA}]' "
                          "(or pip install optuna)") from None
    return optuna


# ---- samplers and pruners: name -> factory(space, seed) -----------------------------------------------------
def _tpe(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _random(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _qmc(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.samplers.QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False)


def _ensemble(space: SearchSpace, seed: int | None):
    from hypera_nnunet.search.ensemble_sampler import EnsembleSampler

    return EnsembleSampler(seed=seed)


def _hyperband(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=space.min_epochs, max_resource=space.max_epochs,
                                          reduction_factor=3)


def _median(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=space.min_epochs)


def _curve(space: SearchSpace, seed: int | None):
    from hypera_nnunet.search.curves import CurvePruner

    return CurvePruner(max_epochs=space.max_epochs, min_epochs=max(5, space.min_epochs))


def _no_pruning(space: SearchSpace, seed: int | None):
    import optuna

    return optuna.pruners.NopPruner()


def _ensemble_ei(space: SearchSpace, seed: int | None):
    from hypera_nnunet.search.ensemble_sampler import EnsembleSampler

    return EnsembleSampler(seed=seed, acquisition="ei")


def _hierarchical(space: SearchSpace, seed: int | None):
    from hypera_nnunet.search.hierarchical import HierarchicalSampler

    return HierarchicalSampler(seed=seed)


SAMPLERS: dict[str, Callable] = {"tpe": _tpe, "random": _random, "qmc": _qmc, "ensemble": _ensemble,
                                 "ensemble-ei": _ensemble_ei, "hierarchical": _hierarchical}
PRUNERS: dict[str, Callable] = {"hyperband": _hyperband, "median": _median, "curve": _curve, "none": _no_pruning}


# ---- the study folder -------------------------------------------------------------------------------------------
def _storage(folder: Path):
    optuna = require_optuna()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return optuna, JournalStorage(JournalFileBackend(str(folder / JOURNAL_FILE)))


def read_study_file(folder: Path) -> dict:
    path = Path(folder) / STUDY_FILE
    if not path.is_file():
        raise HyperaError(f"{folder} is not a search study: {path} does not exist (start one with "
                          "`hypera-nnunet search run SPACE --study FOLDER`)")
    try:
        meta = json.loads(path.read_text())
        meta["space"], meta["sampler"], meta["pruner"]  # noqa: B018 - the keys a study needs
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HyperaError(f"{path} is damaged ({type(e).__name__}: {e}); it was written when the study started "
                          "and is not rewritten") from None
    return meta


def create_or_check(folder: Path, space_values: dict, space_path: str, sampler: str | None, pruner: str | None,
                    seed: int | None, backend: str = "optuna", budget_epochs: int | None = None) -> dict:
    """The study's ``study.json``: written on first use; later runs must search the same space (one line if not).
    ``sampler``/``pruner``/``seed``/``budget_epochs`` None keep what the study was started with.

    :param budget_epochs: the study's total budget in epochs (every trial's epochs, a resumed trial's once): no
        trial starts once it is spent, and a running trial is stopped at the epoch that spends it (user attribute
        ``stopped: budget``; it counts as pruned). None: no budget.
    """
    if budget_epochs is not None and budget_epochs < 1:
        raise HyperaError(f"--budget-epochs must be at least 1, got {budget_epochs}")
    folder = Path(folder)
    path = folder / STUDY_FILE
    if path.is_file():
        meta = read_study_file(folder)
        if meta.get("backend", "optuna") != backend:
            raise HyperaError(f"{folder} is a study of the {meta.get('backend', 'optuna')} backend; use a new --study "
                              f"folder for --backend {backend}")
        if meta["space"] != space_values:
            raise HyperaError(f"{folder} searches another space (its {STUDY_FILE} holds the space it started with); "
                              f"{space_path} differs: use a new --study folder")
        changed = False
        for k, v in (("sampler", sampler), ("pruner", pruner), ("seed", seed), ("budget_epochs", budget_epochs)):
            if v is not None and meta.get(k) != v:
                meta[k], changed = v, True
        if changed:
            atomic_write_json(path, meta)
        return meta
    meta = {"space": space_values, "space_file": str(space_path), "sampler": sampler or "tpe",
            "pruner": pruner or "hyperband", "seed": seed, "study_name": STUDY_NAME, "backend": backend,
            "budget_epochs": budget_epochs}
    if backend == "ray":
        meta["sampler"], meta["pruner"] = "random", pruner or "asha"
    for k, reg in (("sampler", SAMPLERS), ("pruner", PRUNERS)) if backend == "optuna" else ():
        if meta[k] not in reg:
            raise HyperaError(f"unknown {k} '{meta[k]}' (choose from {', '.join(reg)})")
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, meta)
    return meta


def open_study(folder: Path, meta: dict | None = None, worker: int = 0):
    """(optuna study, space, meta) of a study folder; ``worker`` offsets the sampler's seed (workers differ)."""
    folder = Path(folder)
    meta = meta or read_study_file(folder)
    space = parse_space(meta["space"], str(folder / STUDY_FILE))
    optuna, storage = _storage(folder)
    seed = meta.get("seed")
    seed = None if seed is None else int(seed) + worker
    for k, reg in (("sampler", SAMPLERS), ("pruner", PRUNERS)):
        if meta[k] not in reg:
            raise HyperaError(f"unknown {k} '{meta[k]}' (choose from {', '.join(reg)})")
    study = optuna.create_study(study_name=meta.get("study_name", STUDY_NAME), storage=storage, direction="maximize",
                                sampler=SAMPLERS[meta["sampler"]](space, seed),
                                pruner=PRUNERS[meta["pruner"]](space, seed), load_if_exists=True)
    return study, space, meta


def trial_folder(folder: Path, name: str) -> Path:
    return Path(folder) / TRIALS_DIR / name


def _folder_name(number: int) -> str:
    return f"{number:04d}"


# ---- recovery of trials whose worker died -----------------------------------------------------------------------
def _wait_lock(lock: FolderLock, timeout_s: float = 120.0) -> FolderLock:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return lock.acquire()
        except HyperaError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _is_alive(folder: Path) -> bool:
    """Whether a live process holds the trial folder's lock."""
    if not folder.is_dir():
        return False
    lock = FolderLock(folder, "this trial")
    try:
        lock.acquire()
    except HyperaError:
        return True
    lock.release()
    return False


def recover_stale(study, folder: Path, space: SearchSpace) -> list[int]:
    """Mark RUNNING trials of dead workers FAIL (``stale``) and queue each again to resume from its folder; returns
    the numbers recovered. Serialised across workers by a lock on the study's ``trials`` folder."""
    require_optuna()
    from optuna.trial import TrialState

    recovered = []
    with _wait_lock(FolderLock(Path(folder) / TRIALS_DIR, "the study's trial recovery")):
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            name = t.user_attrs.get("folder", _folder_name(t.number))
            if _is_alive(trial_folder(folder, name)):
                continue
            study._storage.set_trial_user_attr(t._trial_id, "stale", True)
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            # a trial that died before sampling all its values starts afresh (its folder's configuration differs)
            attrs = {"resume_of": name} if {p.key for p in space.params} <= set(t.params) else {}
            study.enqueue_trial(t.params, user_attrs=attrs, skip_if_exists=False)
            recovered.append(t.number)
    return recovered


# ---- running --------------------------------------------------------------------------------------------------
def epochs_spent(study) -> int:
    """Epochs trained by the study's trials, a resumed trial's folder counted once (its largest epoch)."""
    by_folder: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        f = t.user_attrs.get("folder") or _folder_name(t.number)
        by_folder[f] = max(by_folder.get(f, 0), int(t.user_attrs.get("epochs") or max(t.intermediate_values,
                                                                                       default=0)))
    return sum(by_folder.values())


def _counted(study) -> int:
    """Trials that count towards ``-n``: finished ones, not those recovered as stale (they continue as new ones)."""
    from optuna.trial import TrialState

    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not t.user_attrs.get("stale"))


def make_objective(space: SearchSpace, folder: Path, objective: Callable | None = None,
                   on_trial: Callable[[str], None] | None = None, budget_epochs: int | None = None):
    """The Optuna objective: sample, lock the trial's folder, run ``objective`` (the space's by default), report
    each epoch, and translate :class:`Pruned` / :class:`TrialFailed`; stop at the study's epoch budget."""
    optuna = require_optuna()
    fn = objective or OBJECTIVES[space.objective]

    def run(trial) -> float:
        values = {p.key: p.suggest(trial) for p in space.params}
        name = trial.user_attrs.get("resume_of") or _folder_name(trial.number)
        if budget_epochs is not None and epochs_spent(trial.study) >= budget_epochs:
            trial.set_user_attr("stopped", "budget")
            trial.study.stop()
            raise optuna.TrialPruned(f"the study's budget of {budget_epochs} epochs is spent")
        tdir = trial_folder(folder, name)
        lock = FolderLock(tdir, f"trial {trial.number}")
        try:
            lock.acquire()
        except HyperaError as e:
            raise TrialFailed(str(e)) from None
        try:
            trial.set_user_attr("folder", name)
            trial.set_user_attr("worker", f"pid {os.getpid()} on {socket.gethostname()}")
            if on_trial:
                on_trial(f"trial {trial.number} started" + (f" (resumes trial folder {name})"
                                                            if name != _folder_name(trial.number) else "")
                         + f": {values}")

            def report(epoch: int, value: float) -> bool:
                trial.report(value, epoch)
                trial.set_user_attr("epochs", epoch)
                if budget_epochs is not None and epoch < space.max_epochs and \
                        epochs_spent(trial.study) >= budget_epochs:
                    trial.set_user_attr("stopped", "budget")
                    return True
                return trial.should_prune()

            try:
                value = fn(space, TrialRun(trial.number, values, tdir, report))
            except Pruned as p:
                if on_trial:
                    on_trial(f"trial {trial.number} pruned after epoch {p.epoch}")
                raise optuna.TrialPruned(str(p)) from None
            except TrialFailed as e:
                trial.set_user_attr("error", str(e))
                trial.set_user_attr("log", str(tdir / "train.log"))
                if on_trial:
                    on_trial(f"trial {trial.number} failed: {e}")
                raise
            if on_trial:
                on_trial(f"trial {trial.number} finished: {value:.4f}")
            return value
        finally:
            lock.release()

    return run


def transfer_into(folder: Path, sources, top: int) -> dict:
    """Warm-start a new study from the most similar of ``sources`` (:mod:`.transfer`), once: a study that already
    records a transfer, or already has trials, is left as it is. Returns the ``transfer`` record."""
    from hypera_nnunet.search.transfer import warm_start

    folder = Path(folder)
    meta = read_study_file(folder)
    if meta.get("transfer"):
        return meta["transfer"]
    study, space, _ = open_study(folder, meta)
    if study.get_trials(deepcopy=False):
        raise HyperaError(f"{folder} already has trials: --transfer-from only warm-starts a new study")
    record = warm_start(study, space, folder, sources, top)
    meta["transfer"] = record
    atomic_write_json(folder / STUDY_FILE, meta)
    return record


def run_worker(folder: Path, n_trials: int, worker: int = 0, objective: Callable | None = None,
               progress: bool = False, on_trial: Callable[[str], None] | None = None) -> int:
    """Run trials until the study holds ``n_trials`` counted trials (shared by every worker); returns how many
    this worker ran."""
    optuna = require_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study, space, meta = open_study(folder, worker=worker)
    budget = meta.get("budget_epochs")
    recovered = recover_stale(study, folder, space)
    if recovered and on_trial:
        on_trial(f"recovered trial(s) {recovered} of a worker that died: queued again to resume from their folders")
    left = n_trials - _counted(study)
    if left <= 0 or (budget is not None and epochs_spent(study) >= budget):
        return 0
    ran = [0]

    def stop_when_done(study_, trial_) -> None:
        ran[0] += 1
        if _counted(study_) >= n_trials or (budget is not None and epochs_spent(study_) >= budget):
            study_.stop()

    study.optimize(make_objective(space, folder, objective, on_trial, budget), n_trials=left, catch=(TrialFailed,),
                   callbacks=[stop_when_done], show_progress_bar=progress, gc_after_trial=False)
    return ran[0]


# ---- reading a study ----------------------------------------------------------------------------------------------
def study_rows(study) -> list[dict[str, Any]]:
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                     "epochs": t.user_attrs.get("epochs", max(t.intermediate_values, default=0)),
                     "folder": t.user_attrs.get("folder"), "error": t.user_attrs.get("error"),
                     "log": t.user_attrs.get("log"), "stale": bool(t.user_attrs.get("stale")),
                     "resume_of": t.user_attrs.get("resume_of")})
    return rows


def _ray_rows(folder: Path) -> list[dict[str, Any]]:
    from hypera_nnunet.search.ray_backend import RESULTS_FILE

    path = Path(folder) / RESULTS_FILE
    if not path.is_file():
        return []
    try:
        trials = json.loads(path.read_text())["trials"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HyperaError(f"{path} is damaged ({type(e).__name__}); it is written when a Ray run ends") from None
    return [{**t, "stale": False, "resume_of": None, "log": None} for t in trials]


def summary(folder: Path) -> dict[str, Any]:
    """States, best trial and budget spent (epochs trained, a resumed trial's epochs counted once)."""
    meta = read_study_file(folder)
    if meta.get("backend") == "ray":
        space = parse_space(meta["space"], str(Path(folder) / STUDY_FILE))
        rows = _ray_rows(folder)
    else:
        study, space, meta = open_study(folder, meta)
        rows = study_rows(study)
    states: dict[str, int] = {}
    for r in rows:
        states[r["state"]] = states.get(r["state"], 0) + 1
    by_folder: dict[str, int] = {}
    for r in rows:
        f = r["folder"] or _folder_name(r["number"])
        by_folder[f] = max(by_folder.get(f, 0), int(r["epochs"] or 0))
    spent = sum(by_folder.values())
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["value"]) if complete else None
    return {"study": str(folder), "backend": meta.get("backend", "optuna"), "sampler": meta["sampler"],
            "pruner": meta["pruner"], "trials": len(rows),
            "states": states, "best": best, "epochs_spent": spent, "max_epochs": space.max_epochs,
            "full_trainings_spent": spent / space.max_epochs, "budget_epochs": meta.get("budget_epochs"),
            "rows": rows}


def best_trial(folder: Path) -> tuple[dict, SearchSpace]:
    s = summary(folder)
    if s["best"] is None:
        raise HyperaError(f"study {folder} has no completed trial yet ({s['trials']} trial(s): {s['states']})")
    return s["best"], parse_space(read_study_file(folder)["space"], str(Path(folder) / STUDY_FILE))


def export_best(folder: Path, out: Path) -> dict:
    """Write the best trial's configuration, without the search's budget, for ``HYPERA_CONFIG`` /
    ``hypera-nnunet benchmark -tr TRAINER:FILE``; returns what was written."""
    best, space = best_trial(folder)
    cfg = space.export_config(best["params"])
    out = Path(out)
    if out.suffix in (".yaml", ".yml"):
        import yaml

        from hypera_nnunet.common.atomic_io import atomic_write_text

        atomic_write_text(out, yaml.safe_dump(cfg, sort_keys=True))
    else:
        atomic_write_json(out, cfg)
    return {"trial": best["number"], "value": best["value"], "trainer": space.trainer, "config": cfg,
            "file": str(out)}
