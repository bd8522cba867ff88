"""``HyperaTrainer``: nnU-Net's trainer with HYPERA agents steering its hyperparameters.

Only nnU-Net's hooks live here. Each calls ``super()`` (first, except that ``on_train_start`` locks the fold
before it and ``on_epoch_end`` lets the coordinator decide before nnU-Net checkpoints), so HYPERA composes
with nnU-Net's own variants through the method resolution order (``class
MyTrainer(HyperaTrainer, nnUNetTrainerNoDA)`` keeps NoDA's pipeline). Everything else has a room of
its own: knobs (:mod:`.knobs`), the data pipeline (:mod:`.pipeline`), the state signals
(:mod:`.trainer_signals`), checkpoints (:mod:`.checkpoint`), the progress panel (:mod:`.progress_panel`),
pause and time budget (:mod:`.pause`), DDP (:mod:`.ddp`) and the variants (:mod:`.variants`).

Fresh agents' *deterministic* actions are nnU-Net's values; while exploring they are not (see
:mod:`hypera_nnunet.agents.base`). ``HyperaTrainer_Shadow`` decides and logs but applies nnU-Net's values.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from time import perf_counter

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from hypera_nnunet.common.atomic_io import atomic_torch_save, atomic_write_json
from hypera_nnunet.common.locks import FolderLock
from hypera_nnunet.common.safe_load import load_torch_file
from hypera_nnunet.config import run_config
from hypera_nnunet.control.coordinator import Coordinator
from hypera_nnunet.control.decision_log import DecisionLog
from hypera_nnunet.control.safeguards import RollbackGuard
from hypera_nnunet.errors import ConfigError, HyperaError, exit_with_error
from hypera_nnunet.nnunet import checkpoint as ckpt
from hypera_nnunet.nnunet.ddp import broadcast_from_rank0
from hypera_nnunet.nnunet.experience import find_reference, outcome_of, run_identity
from hypera_nnunet.nnunet.hyperparameters import EpochRecord, NNUNetHyperparameters
from hypera_nnunet.nnunet.knobs import NNUNetKnobs
from hypera_nnunet.nnunet.pause import PauseBudget
from hypera_nnunet.nnunet.pipeline import scale_transforms
from hypera_nnunet.nnunet.plotting import ThinPlots
from hypera_nnunet.nnunet.progress_panel import LOG_PREFIX, HyperaLocalLogger, stack_panel
from hypera_nnunet.nnunet.run_schedule import RunSchedule
from hypera_nnunet.nnunet.seeding import SeededTraining, derive
from hypera_nnunet.nnunet.tensorboard import TensorBoardLog
from hypera_nnunet.nnunet.timing import PhaseTiming
from hypera_nnunet.nnunet.trainer_signals import build_signals, total_norm
from hypera_nnunet.store import ExperienceStore, RunRecorder, new_run_id, store_path

_fail = exit_with_error


def _check_knobs(config) -> None:
    """Every knob an agent names must be registered: a configuration error before any data is loaded."""
    from hypera_nnunet.agents import AGENTS
    from hypera_nnunet.nnunet.knobs import KNOBS

    for name, settings in config.agents.items():
        unknown = [k for k in AGENTS[name].wanted_knobs(settings) if k not in KNOBS]
        if unknown:
            raise ConfigError(f"agent '{name}' names unknown knob(s) {unknown}; registered knobs: {', '.join(KNOBS)}")


class HyperaTrainer(RunSchedule, NNUNetHyperparameters, EpochRecord, ThinPlots, PhaseTiming, SeededTraining,
                    nnUNetTrainer):
    """nnU-Net with all six HYPERA agents (learning rate, loss weights, batch size, augmentation,
    regularization, optimizer) under one coordinator."""

    #: the entry of :data:`hypera_nnunet.nnunet.variant_table.VARIANTS` whose configuration this class runs
    hypera_variant = "HyperaTrainer"
    reads_legacy_agent_state = True  # checkpoints of the earlier layout carry the agents' state inside

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        try:  # every setting is checked here, before any data is loaded
            self.hypera = run_config(self.hypera_variant)
            _check_knobs(self.hypera)
        except HyperaError as e:
            _fail(e)
        if self.hypera.save_every:
            self.save_every = int(self.hypera.save_every)
        self.coordinator: Coordinator | None = None
        self.hypera_aug = {"aug_prob": 1.0, "aug_strength": 1.0}
        self.hypera_rebuild_s = 0.0
        self._hypera_state: dict | None = None
        self._store_run_id: str | None = None  # this run's id in the experience store (kept in checkpoints)
        self._recorder: RunRecorder | None = None
        self._hypera_lock: FolderLock | None = None
        self._grad_norms: list[torch.Tensor] = []
        self._hypera_s: dict[str, float] = defaultdict(float)  # trainer-side HYPERA seconds since the last line
        self._pause = PauseBudget(self.hypera)
        self._tb: TensorBoardLog | None = None
        local = self.logger.local_logger
        self.logger.local_logger = HyperaLocalLogger(local.verbose)
        self.logger.local_logger.my_fantastic_logging = local.my_fantastic_logging

    def nnunet_settings(self):
        """nnU-Net's own hyperparameters from the configuration's ``nnunet:`` section (null: nnU-Net's)."""
        return self.hypera.nnunet

    def run_configuration(self):
        return self.hypera

    def set_run_configuration(self, cfg) -> None:
        self.hypera = cfg

    @property
    def hypera_dir(self) -> Path:
        return Path(self.output_folder) / ckpt.HYPERA_DIR

    @property
    def _writes(self) -> bool:
        """Only rank 0 writes HYPERA's files."""
        return self.local_rank == 0

    def _event(self, line: str) -> None:
        self.print_to_log_file(line)

    # ---- data pipeline -------------------------------------------------------------------------
    def get_training_transforms(self, *args, **kwargs):
        """The pipeline of the next class in the MRO (nnU-Net's, or a variant's such as NoDA), with the
        augmentation agent's probability and strength multipliers."""
        self._hypera_tr_args = (args, kwargs)
        t = super().get_training_transforms(*args, **kwargs)
        aug = self.hypera_aug
        if aug["aug_prob"] != 1.0 or aug["aug_strength"] != 1.0:
            scale_transforms(t, aug["aug_prob"], aug["aug_strength"])
        return t

    # ---- hooks -----------------------------------------------------------------------------------
    def _lock_fold(self) -> None:
        """One training per fold, held until this process exits (validation after training included)."""
        if self._writes and self._hypera_lock is None:
            try:
                self._hypera_lock = FolderLock(self.hypera_dir, "this fold's HYPERA training").acquire()
            except HyperaError as e:
                _fail(e)

    def on_train_start(self):
        self._lock_fold()  # before nnU-Net writes anything
        super().on_train_start()
        bs = self.hypera.agents.get("batch_size")  # the batch-size knob's bounds are that agent's settings
        options = {"batch_size": {"min_batch_size": bs.min_batch_size, "max_batch_size": bs.max_batch_size}} \
            if bs is not None else {}
        knobs = NNUNetKnobs(self, options)
        guard = RollbackGuard({"network": self.network, "optimizer": self.optimizer}, self.hypera.safeguards)
        # agents' seeds from (run seed, fold): $HYPERA_SEED if set, else the configuration's seed
        agent_seed = derive(self.hypera.seed if self.hypera_seed is None else self.hypera_seed, self.fold,
                            "agents") % 2**31
        try:
            reference, note, recorder = self._experience(agent_seed)
            self.coordinator = Coordinator(
                self.hypera, knobs, self.num_epochs, guard=guard, on_event=self._event, seed=agent_seed,
                log=DecisionLog(self.hypera_dir / "decisions.jsonl") if self._writes else None,
                broadcast=broadcast_from_rank0 if self.is_ddp else None,
                reference=reference, reference_note=note, recorder=recorder)
            if recorder is not None:
                recorder.meta["agents"] = {a.name: {"knobs": list(a.knobs), "obs_dim": a.sac.obs_dim}
                                           for a in self.coordinator.agents}
                recorder.meta["knob_order"] = list(self.coordinator.knob_order)
            for name, why in self.coordinator.skipped.items():
                self.print_to_log_file(f"HYPERA: agent '{name}' is off: {why}")
            if self._hypera_state is not None:
                self.coordinator.load_state_dict(self._hypera_state)
                self._hypera_state = None
            elif self.hypera.transfer.source:
                self._load_transfer(self.hypera.transfer.source)
        except (HyperaError, ValueError) as e:
            _fail(e)
        ll = self.logger.local_logger.my_fantastic_logging
        for k in self.coordinator.knob_order:
            ll.setdefault(LOG_PREFIX + k, [float("nan")] * self.current_epoch)
        self.optimizer.register_step_pre_hook(self._record_grad_norm)
        self.coordinator.on_train_start(self.current_epoch)
        if self._writes:
            atomic_write_json(self.hypera_dir / "config.json", {
                "trainer": self.__class__.__name__, "variant": self.hypera_variant, "config": self.hypera.to_dict(),
                "agents": [a.name for a in self.coordinator.agents], "knobs": list(self.coordinator.knob_order),
                "hypera_seed": self.hypera_seed, "agent_seed": agent_seed})
            if self.hypera.tensorboard:
                try:
                    self._tb = TensorBoardLog(self.output_folder, start_epoch=self.current_epoch)
                except HyperaError as e:
                    _fail(e)
        self.print_to_log_file(f"HYPERA agents: {[a.name for a in self.coordinator.agents]}, knobs: "
                               f"{list(self.coordinator.knob_order)}, strategy: {self.hypera.strategy}, "
                               f"shadow: {self.hypera.shadow}, transfer: {self.hypera.transfer.mode}")

    def _experience(self, agent_seed: int):
        """The counterfactual reward's reference (if asked for) and this run's recorder (if there is a store)."""
        store = store_path(self.hypera.store)
        self._recorder = None
        if store is None and not self.hypera.reward.counterfactual:
            return None, None, None  # nothing to read or write: no identity to compute
        identity = run_identity(self)
        reference, note = find_reference(store, identity) if self.hypera.reward.counterfactual else (None, None)
        if note is not None:
            self.print_to_log_file(f"HYPERA reward: {note}")
        self._recorder = None
        if store is not None and self._writes:
            self._store_run_id = self._store_run_id or new_run_id(self.fold, self.hypera_seed)
            meta = {"identity": identity, "trainer": self.__class__.__name__, "variant": self.hypera_variant,
                    "agent_seed": agent_seed, "reward_reference": note or "plain",
                    "config": self.hypera.to_dict(), "output_folder": str(self.output_folder)}
            self._recorder = RunRecorder.resume(ExperienceStore(store), self._store_run_id, meta, self.current_epoch)
            self.print_to_log_file(f"HYPERA store: run {self._store_run_id} in {store}")
        return reference, note, self._recorder

    def _load_transfer(self, source: str) -> None:
        p = Path(source)
        if p.is_dir():
            p = p / "hypera" / "policies.pt" if (p / "hypera").is_dir() else p / "policies.pt"
        policies = load_torch_file(p, f"HYPERA transfer source {source}: policies")
        loaded = self.coordinator.load_policies(policies, str(p))
        self.print_to_log_file(f"HYPERA: {self.hypera.transfer.mode} from {p}: agents {loaded}")
        store = Path(source)
        if self.hypera.transfer.mode == "warm_start" and (store / "store.json").is_file():
            from hypera_nnunet.control.offline import fill_from_store

            added = fill_from_store(self.coordinator.agents, ExperienceStore(store))
            self.print_to_log_file(f"HYPERA: replay buffers warm-started from the store {store}: {added}")

    def _record_grad_norm(self, optimizer, args, kwargs):
        t0 = perf_counter()
        self._grad_norms.append(total_norm([p.grad for g in optimizer.param_groups for p in g["params"]]))
        self._hypera_s["trainer_grad_norm"] += perf_counter() - t0
        if self.coordinator is not None and self.coordinator.iteration_agents(len(self._grad_norms)):
            # iteration-level learning-rate decisions (LearningRateAgent every_n_iterations), before this step
            self.coordinator.on_iteration(len(self._grad_norms), self._signals())

    def _signals(self, grad_norms: list[float] | None = None):
        t0 = perf_counter()
        if grad_norms is None:
            grad_norms = torch.stack(self._grad_norms).float().cpu().tolist() if self._grad_norms else []
        try:
            return build_signals(self, grad_norms)
        finally:
            self._hypera_s["trainer_signals"] += perf_counter() - t0

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.coordinator.knobs.on_epoch_start()
        # the state at epoch start uses the last finished epoch's gradient norms, kept by the coordinator
        # (and in checkpoints), so a resumed run sees exactly the state the uninterrupted run saw
        self.coordinator.on_epoch_start(self._signals(grad_norms=self.coordinator.last_grad_norms))
        self._grad_norms = []
        self.logger.local_logger.my_fantastic_logging["lrs"][self.current_epoch] = \
            self.optimizer.param_groups[0]["lr"]

    def _pop_hypera_s(self) -> dict[str, float]:
        """Trainer-side HYPERA time since the last decision line, by part (the panel drawn last epoch too)."""
        local = self.logger.local_logger
        self._hypera_s["trainer_panel"] += local.panel_s
        local.panel_s = 0.0
        out, self._hypera_s = dict(self._hypera_s), defaultdict(float)
        return out

    def on_epoch_end(self):
        self.coordinator.on_epoch_end(self._signals(), extra_s=self._pop_hypera_s())
        if self._recorder is not None:
            self._recorder.epoch_done(self.current_epoch, self.logger.get_value("ema_fg_dice", step=-1))
        if self._tb is not None:
            self._tb.write(self.coordinator.record)
        t0 = perf_counter()
        for k in self.coordinator.knob_order:
            self.logger.log(LOG_PREFIX + k, self.coordinator.record["multipliers"][k], self.current_epoch)
        self._hypera_s["trainer_log"] += perf_counter() - t0
        super().on_epoch_end()
        why = self._pause.epoch_done(self.num_epochs - self.current_epoch)
        if why is not None:
            self._pause_now(why)

    def _pause_now(self, why: str) -> None:
        # on_epoch_end has already advanced current_epoch; nnU-Net saves 'current_epoch + 1'
        self.current_epoch -= 1
        self.save_checkpoint(os.path.join(self.output_folder, "checkpoint_latest.pth"))
        self.current_epoch += 1
        for dl in (self.dataloader_train, self.dataloader_val):
            if hasattr(dl, "_finish"):
                dl._finish()
        self._plot_panel()
        self.print_to_log_file(f"HYPERA: paused after epoch {self.current_epoch - 1}: {why}. Resume with "
                               "`nnUNetv2_train ... --c`.")
        raise SystemExit(0)

    def _plot_panel(self) -> None:
        """Bring ``progress_hypera.png`` up to date (it is drawn every ``PANEL_EVERY`` epochs otherwise)."""
        if self._writes:
            self.logger.local_logger.plot_panel(self.output_folder)

    def on_train_end(self):
        super().on_train_end()
        if self.coordinator is not None:
            self.coordinator.on_train_end()
            if self._writes:
                self._plot_panel()
                stack_panel(self.output_folder)
                atomic_torch_save(self.coordinator.policies(), self.hypera_dir / "policies.pt")
        if self._tb is not None:
            self._tb.close()

    def perform_actual_validation(self, save_probabilities: bool = False):
        self._lock_fold()  # `nnUNetv2_train --val` validates without training
        super().perform_actual_validation(save_probabilities)
        if self._recorder is not None and self._writes:
            outcome = outcome_of(Path(self.output_folder))
            if outcome is not None:
                self._recorder.finish(outcome)

    # ---- checkpoints (see .checkpoint: atomic, extras beside them) -----------------------------
    def checkpoint_extras(self) -> dict:
        extras = super().checkpoint_extras()
        if self.coordinator is not None:
            extras["hypera"] = self.coordinator.state_dict()
        if self._store_run_id is not None:
            extras["store_run_id"] = self._store_run_id
        return extras

    def load_checkpoint_extras(self, extras: dict | None) -> None:
        super().load_checkpoint_extras(extras)
        self._hypera_state = (extras or {}).get("hypera")
        self._store_run_id = (extras or {}).get("store_run_id")
        if self._hypera_state is None:
            self.print_to_log_file("HYPERA: checkpoint has no agent state; agents start fresh.")

