"""The schedule agent: run-level choices (peak learning rate, poly exponent, warm-up, early and late loss weights,
augmentation, when to stop), one per run, learned across runs.

Many outcomes are decided by a whole run's settings rather than by epoch-to-epoch moves. With ``schedule.space``
set (a ``hypera-nnunet search`` space file) and an experience store, each run asks the store's study
``STORE/schedule/<space file stem>/`` (the search's study format: ``study.json`` and an Optuna journal, safe with
several trainings at once) for one point before nnU-Net builds its optimizer and loss, trains with it (merged onto
the run's configuration, like a search trial's ``HYPERA_CONFIG``), and tells the study nnU-Net's final validation
Dice (``schedule.objective: dice``) or that minus the store's seeded baseline of the same fold and seed
(``advantage``). It is Optuna's ask-and-tell (TPE by default) with the trainings as trials: Bayesian optimisation
over the store's outcomes, where the offline search drives the trainings itself. The point a run got is kept in
``fold_X/hypera/schedule_trial.json``; a restarted or resumed run of the fold keeps it.
"""

from __future__ import annotations

from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.errors import ConfigError, HyperaError, exit_with_error
from hypera_nnunet.store import ExperienceStore, store_path

TRIAL_FILE = "schedule_trial.json"


class RunSchedule:
    """Mixin: the schedule agent (see the module). Put it before :class:`.hyperparameters.NNUNetHyperparameters`.

    A trainer provides :meth:`run_configuration` and :meth:`set_run_configuration` (its whole HYPERA configuration).
    """

    def run_configuration(self):
        raise NotImplementedError

    def set_run_configuration(self, cfg) -> None:
        raise NotImplementedError

    @property
    def _trial_file(self) -> Path:
        return Path(self.output_folder) / "hypera" / TRIAL_FILE

    def initialize(self):
        if not self.was_initialized:
            try:
                self._schedule_choose()
            except (HyperaError, ConfigError) as e:
                exit_with_error(e)
        super().initialize()

    def _schedule_study(self, cfg):
        from hypera_nnunet.config import read_config_file
        from hypera_nnunet.search.space import load_space
        from hypera_nnunet.search.study import create_or_check, open_study

        store = store_path(cfg.store)
        if store is None:
            raise ConfigError("schedule.space needs an experience store (store: DIR or $HYPERA_STORE): the "
                              "schedule agent learns from earlier runs' outcomes kept there")
        path = Path(cfg.schedule.space)
        space = load_space(path)
        folder = store / "schedule" / path.stem
        ExperienceStore(store).ensure()
        meta = create_or_check(folder, read_config_file(path), str(path), None, None, None)
        study, _, _ = open_study(folder, meta)
        return study, space, folder

    def _schedule_choose(self) -> None:
        cfg = self.run_configuration()
        if cfg.schedule.space is None:
            self._schedule = None
            return
        study, space, folder = self._schedule_study(cfg)
        chosen = None
        if self.local_rank == 0:
            kept = _read(self._trial_file)
            if kept is not None and not kept.get("told") and kept.get("study") == str(folder):
                chosen = {"number": kept["number"], "params": kept["params"]}
            else:
                trial = study.ask(space.distributions())
                chosen = {"number": trial.number, "params": dict(trial.params)}
                atomic_write_json(self._trial_file, {**chosen, "study": str(folder), "told": False})
        if getattr(self, "is_ddp", False):
            from hypera_nnunet.nnunet.ddp import broadcast_from_rank0

            chosen = broadcast_from_rank0(chosen)
        from hypera_nnunet.config import config_from_dict, merge_config

        merged = merge_config(cfg.to_dict(), space.export_config(chosen["params"]))
        self.set_run_configuration(config_from_dict(merged, f"{cfg.schedule.space} (trial {chosen['number']})"))
        self._schedule = {**chosen, "study": study, "folder": folder, "objective": cfg.schedule.objective}
        self.print_to_log_file(f"HYPERA schedule: trial {chosen['number']} of {folder}: {chosen['params']}")

    def perform_actual_validation(self, save_probabilities: bool = False):
        super().perform_actual_validation(save_probabilities)
        s = getattr(self, "_schedule", None)
        if s is None or self.local_rank != 0:
            return
        from hypera_nnunet.nnunet.experience import outcome_of, run_identity

        outcome = outcome_of(Path(self.output_folder))
        if outcome is None:
            return
        value = outcome["foreground_mean"]
        if s["objective"] == "advantage":
            store = ExperienceStore(store_path(self.run_configuration().store))
            base = store.baseline(run_identity(self)) if getattr(self, "hypera_seed", None) is not None else None
            if base is None or not base.get("final"):
                self.print_to_log_file(f"HYPERA schedule: trial {s['number']} not told: the store has no seeded "
                                       "baseline of this fold and seed for schedule.objective 'advantage'")
                return
            value -= float(base["final"]["foreground_mean"])
        s["study"].tell(s["number"], value)
        atomic_write_json(self._trial_file, {"number": s["number"], "params": s["params"], "study": str(s["folder"]),
                                             "told": True, "value": value, "objective": s["objective"]})
        self.print_to_log_file(f"HYPERA schedule: told trial {s['number']} {s['objective']} = {value:.4f}")


def _read(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
