"""``HyperaTrainer``: nnU-Net's trainer with HYPERA agents steering its hyperparameters.

Each hook calls ``super()`` first, then the coordinator, so nnU-Net's behaviour is untouched where
the agents do not act (and exactly reproduced by fresh agents, whose deterministic actions are 0).

Variants follow nnU-Net's naming (a trainer's name is its results folder, so names are permanent):

* agent subsets: ``HyperaTrainer_LR``, ``_Loss``, ``_BatchSize``, ``_Aug``, ``_Reg``, ``_Optim``, ``_LRLoss``;
* controls and ablations: ``_Shadow`` (decide and log, apply nothing), ``_NoRollback``, ``_NoTrust``,
  ``_Priority``, ``_Consensus``;
* transfer: ``_WarmStart`` and ``_Frozen`` (policies from ``HYPERA_TRANSFER``, a ``policies.pt`` or its fold folder);
* budgets: ``<variant>_<E>epochs`` and ``<variant>_<E>epochs_<I>iters`` (see :mod:`.budget`), and
  ``nnUNetTrainer_<E>epochs_<I>iters`` for the matching baselines.

``HYPERA_CONFIG=/path/config.{json,yaml}`` overrides a variant's built-in configuration.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from time import perf_counter, time

import torch
import torch.distributed as dist
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from nnunetv2.training.logging.nnunet_logger import LocalLogger
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from hypera_nnunet.config import HyperaConfig, SafeguardConfig, TransferConfig, config_from_env
from hypera_nnunet.coordinator import Coordinator, DecisionLog
from hypera_nnunet.errors import ConfigError, HyperaError
from hypera_nnunet.nnunet.budget import register_budget_variants
from hypera_nnunet.nnunet.knobs import NNUNetKnobs, scale_transforms, total_norm
from hypera_nnunet.safeguards import RollbackGuard
from hypera_nnunet.signals import Signals

ALL_AGENTS = ("learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization")
TRANSFER_ENV = "HYPERA_TRANSFER"
LOG_PREFIX = "hypera_"


class HyperaLocalLogger(LocalLogger):
    """nnU-Net's local logger, plus the knobs' multipliers as a plot.

    Every ``PANEL_EVERY`` epochs, at a pause and at the end they go to ``progress_hypera.png`` next to
    nnU-Net's ``progress.png``; at the end of training the trainer appends that panel below
    ``progress.png`` (:meth:`stack_panel`). Drawing the panel costs 0.17 s on 2 CPU cores, 3.6% of an
    epoch of the CPU benchmark protocol if done every epoch; re-encoding the 3000 x 5400-pixel
    ``progress.png`` every epoch cost 0.5-2 s. The multipliers are in ``hypera/decisions.jsonl`` at every
    epoch. ``panel_s`` accumulates the drawing time (the trainer reports it with the agents' overhead)."""

    PANEL_EVERY = 50

    def __init__(self, verbose: bool = False):
        super().__init__(verbose)
        self.panel_s = 0.0
        self._panel_epochs = -1  # how many epochs the last panel showed

    def plot_progress_png(self, output_folder):
        super().plot_progress_png(output_folder)
        if self._epochs() % self.PANEL_EVERY == 0:
            self.plot_panel(output_folder)

    def _epochs(self) -> int:
        return len(self.my_fantastic_logging.get("epoch_end_timestamps", []))

    def plot_panel(self, output_folder) -> None:
        """Draw ``progress_hypera.png`` now, unless it already shows every finished epoch."""
        keys = sorted(k for k in self.my_fantastic_logging if k.startswith(LOG_PREFIX))
        if not keys or self._panel_epochs == self._epochs():
            return
        self._panel_epochs = self._epochs()
        t0 = perf_counter()
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 1, figsize=(30, 12))
        for k in keys:
            ys = self.my_fantastic_logging[k]
            ax.plot(range(len(ys)), ys, label=k[len(LOG_PREFIX):], linewidth=4)
        ax.axhline(1.0, color="k", ls="--", linewidth=2)
        ax.set_xlabel("epoch")
        ax.set_ylabel("multiplier of nnU-Net's value")
        ax.legend(loc=(0, 1), ncol=max(1, len(keys)))
        plt.tight_layout()
        target = os.path.join(output_folder, "progress_hypera.png")
        tmp = target[:-4] + ".tmp.png"
        fig.savefig(tmp)
        plt.close(fig)
        os.replace(tmp, target)
        self.panel_s += perf_counter() - t0

    @staticmethod
    def stack_panel(output_folder) -> None:
        """Append ``progress_hypera.png`` below ``progress.png`` (once, at the end of training)."""
        main = os.path.join(output_folder, "progress.png")
        extra = os.path.join(output_folder, "progress_hypera.png")
        if os.path.isfile(main) and os.path.isfile(extra):
            _stack_png(main, extra)


def _stack_png(main: str, extra: str) -> None:
    """Append ``extra`` below ``main`` so that progress.png shows the hyperparameter trajectories.

    8-bit pixels and fast PNG compression (a float round trip through matplotlib took about 2 s).
    ``extra`` is kept, so a plot of the trajectories alone stays available."""
    from PIL import Image

    with Image.open(main) as a_img, Image.open(extra) as b_img:
        a, b = a_img.convert("RGB"), b_img.convert("RGB")
    out = Image.new("RGB", (max(a.width, b.width), a.height + b.height), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (0, a.height))
    tmp = main[:-4] + ".tmp.png"
    out.save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, main)


@contextlib.contextmanager
def _checkpoint_extras(extra: dict):
    """Add ``extra`` to the dict nnU-Net's ``save_checkpoint`` passes to ``torch.save``, and write it
    atomically (temporary name, then rename). nnU-Net builds that dict inside the method, so this is
    the one place to add to it without re-reading and re-writing the checkpoint file."""
    original = torch.save

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "network_weights" in obj and isinstance(f, (str, os.PathLike)):
            obj = {**obj, **extra}
            tmp = f"{f}.tmp"
            original(obj, tmp, *args, **kwargs)
            os.replace(tmp, f)
            return None
        return original(obj, f, *args, **kwargs)

    torch.save = save
    try:
        yield
    finally:
        torch.save = original


class HyperaTrainer(nnUNetTrainer):
    """nnU-Net with all six HYPERA agents (learning rate, loss weights, batch size, augmentation,
    regularization, optimizer) under one coordinator."""

    hypera_config = HyperaConfig(agents={a: {} for a in ALL_AGENTS})

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        try:
            self.hypera = config_from_env(self.hypera_config_for_run())
        except HyperaError as e:  # one clear line from inside nnUNetv2_train, not a traceback
            print(f"hypera-nnunet: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        if self.hypera.save_every:
            self.save_every = int(self.hypera.save_every)
        self.coordinator: Coordinator | None = None
        self.hypera_aug = {"aug_prob": 1.0, "aug_strength": 1.0}
        self._hypera_state: dict | None = None
        self._grad_norms: list[torch.Tensor] = []
        self._hypera_s: dict[str, float] = defaultdict(float)  # trainer-side HYPERA seconds since the last record
        self._epochs_this_process = 0
        self.hypera_rebuild_s = 0.0
        self._process_start = time()
        local = self.logger.local_logger
        self.logger.local_logger = HyperaLocalLogger(local.verbose)
        self.logger.local_logger.my_fantastic_logging = local.my_fantastic_logging

    def hypera_config_for_run(self) -> HyperaConfig:
        """The variant's built-in configuration (``HYPERA_CONFIG`` overrides it)."""
        return self.hypera_config

    # ---- data pipeline -------------------------------------------------------------------------
    def get_training_transforms(self, *args, **kwargs):
        """nnU-Net's pipeline, with the augmentation agent's probability and strength multipliers."""
        self._hypera_tr_args = (args, kwargs)
        t = nnUNetTrainer.get_training_transforms(*args, **kwargs)
        aug = getattr(self, "hypera_aug", None)
        if aug and (aug["aug_prob"] != 1.0 or aug["aug_strength"] != 1.0):
            scale_transforms(t, aug["aug_prob"], aug["aug_strength"])
        return t

    def hypera_rebuild_dataloaders(self, reason: str = "batch_size") -> None:
        """Make a new batch size or augmentation take effect.

        With nnU-Net's single-process loader (``nnUNet_n_proc_DA=0``) a new augmentation only swaps
        the transform pipeline in place. Otherwise the dataloaders are restarted, because worker
        processes hold copies of the pipeline; that costs a few seconds, so the augmentation knob
        only rebuilds when its value moves by more than ``REBUILD_TOLERANCE``.
        """
        if self.dataloader_train is None:
            return
        t0 = time()
        inner = getattr(self.dataloader_train, "data_loader", None)
        if reason == "augmentation" and isinstance(self.dataloader_train, SingleThreadedAugmenter) and \
                hasattr(inner, "transforms") and getattr(self, "_hypera_tr_args", None) is not None:
            args, kwargs = self._hypera_tr_args
            inner.transforms = self.get_training_transforms(*args, **kwargs)
        else:
            for dl in (self.dataloader_train, self.dataloader_val):
                if hasattr(dl, "_finish"):
                    dl._finish()
            self.dataloader_train, self.dataloader_val = self.get_dataloaders()
        self.hypera_rebuild_s += time() - t0

    # ---- hooks -----------------------------------------------------------------------------------
    def _broadcast(self, values: dict) -> dict:
        obj = [values if self.local_rank == 0 else None]
        dist.broadcast_object_list(obj, src=0)
        return obj[0]

    def on_train_start(self):
        super().on_train_start()
        bs = self.hypera.agents.get("batch_size")
        knobs = NNUNetKnobs(self, min_batch_size=getattr(bs, "min_batch_size", 2),
                            max_batch_size=getattr(bs, "max_batch_size", None))
        log = DecisionLog(Path(self.output_folder) / "hypera" / "decisions.jsonl") if self.local_rank == 0 else None
        guard = RollbackGuard({"network": self.network, "optimizer": self.optimizer}, self.hypera.safeguards)
        self.coordinator = Coordinator(self.hypera, knobs, self.num_epochs, log=log, guard=guard,
                                       broadcast=self._broadcast if self.is_ddp else None)
        for name, why in self.coordinator.skipped.items():
            self.print_to_log_file(f"HYPERA: agent '{name}' is off: {why}")
        if self._hypera_state is not None:
            self.coordinator.load_state_dict(self._hypera_state)
            self._hypera_state = None
        elif self.hypera.transfer.source:
            self._load_transfer(self.hypera.transfer.source)
        ll = self.logger.local_logger.my_fantastic_logging
        for k in self.coordinator.knob_order:
            ll.setdefault(LOG_PREFIX + k, [float("nan")] * self.current_epoch)
        self.optimizer.register_step_pre_hook(self._record_grad_norm)
        self.coordinator.on_train_start(self.current_epoch)
        if self.local_rank == 0:
            cfg_path = Path(self.output_folder) / "hypera" / "config.json"
            cfg_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cfg_path.with_name("config.json.tmp")
            tmp.write_text(json.dumps({"trainer": self.__class__.__name__, "config": self.hypera.to_dict(),
                                       "agents": [a.name for a in self.coordinator.agents],
                                       "knobs": list(self.coordinator.knob_order)}, indent=2))
            os.replace(tmp, cfg_path)
        self.print_to_log_file(f"HYPERA agents: {[a.name for a in self.coordinator.agents]}, knobs: "
                               f"{list(self.coordinator.knob_order)}, strategy: {self.hypera.strategy}, "
                               f"shadow: {self.hypera.shadow}, transfer: {self.hypera.transfer.mode}")

    def _load_transfer(self, source: str) -> None:
        p = Path(source)
        if p.is_dir():
            p = p / "hypera" / "policies.pt" if (p / "hypera").is_dir() else p / "policies.pt"
        if not p.is_file():
            raise HyperaError(f"HYPERA transfer source {source} has no policies.pt (looked at {p}).")
        policies = torch.load(p, map_location="cpu", weights_only=False)
        loaded = self.coordinator.load_policies(policies, str(p))
        self.print_to_log_file(f"HYPERA: {self.hypera.transfer.mode} from {p}: agents {loaded}")

    def _record_grad_norm(self, optimizer, args, kwargs):
        t0 = perf_counter()
        self._grad_norms.append(total_norm([p.grad for g in optimizer.param_groups for p in g["params"]]))
        self._hypera_s["trainer_grad_norm"] += perf_counter() - t0
        if self.coordinator is not None and self.coordinator.iteration_agents(len(self._grad_norms)):
            # iteration-level learning-rate decisions (LearningRateAgent every_n_iterations), before this step
            self.coordinator.on_iteration(len(self._grad_norms), self._signals())

    def _signals(self, grad_norms: list[float] | None = None) -> Signals:
        t0 = perf_counter()
        try:
            return self._build_signals(grad_norms)
        finally:
            self._hypera_s["trainer_signals"] += perf_counter() - t0

    def _build_signals(self, grad_norms: list[float] | None) -> Signals:
        get = self.logger.get_value
        starts, ends = get("epoch_start_timestamps", None), get("epoch_end_timestamps", None)
        times = [e - s for s, e in zip(starts, ends)]
        if len(starts) > len(ends):
            times.append(time() - starts[-1])
        if grad_norms is not None:
            norms = list(grad_norms)
        else:
            norms = torch.stack(self._grad_norms).float().cpu().tolist() if self._grad_norms else []
        with torch.no_grad():
            w = float(total_norm([p.detach() for p in self.network.parameters()]))
        return Signals(
            epoch=self.current_epoch, num_epochs=self.num_epochs,
            train_losses=[float(v) for v in get("train_losses", None)],
            val_losses=[float(v) for v in get("val_losses", None)],
            pseudo_dice=[float(v) for v in get("mean_fg_dice", None)],
            ema_dice=[float(v) for v in get("ema_fg_dice", None)],
            epoch_times=times, grad_norms=norms, weight_norm=w,
        )

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.coordinator.knobs.lr_base = self.optimizer.param_groups[0]["lr"]
        # The state at epoch start uses the last finished epoch's gradient norms, kept by the coordinator
        # (and in checkpoints), so a resumed run sees exactly the state the uninterrupted run saw.
        self.coordinator.on_epoch_start(self._signals(grad_norms=self.coordinator.last_grad_norms))
        self._grad_norms = []
        lrs = self.logger.local_logger.my_fantastic_logging["lrs"]
        lrs[self.current_epoch] = self.optimizer.param_groups[0]["lr"]

    def _pop_hypera_s(self) -> dict[str, float]:
        """Trainer-side HYPERA time since the last decision line, by part (the panel drawn last epoch too)."""
        local = self.logger.local_logger
        self._hypera_s["trainer_panel"] += getattr(local, "panel_s", 0.0)
        local.panel_s = 0.0
        out, self._hypera_s = dict(self._hypera_s), defaultdict(float)
        return out

    def on_epoch_end(self):
        signals = self._signals()
        self.coordinator.on_epoch_end(signals, extra_s=self._pop_hypera_s())
        t0 = perf_counter()
        for k in self.coordinator.knob_order:
            self.logger.log(LOG_PREFIX + k, self.coordinator.record["multipliers"][k], self.current_epoch)
        self._hypera_s["trainer_log"] += perf_counter() - t0
        super().on_epoch_end()
        self._epochs_this_process += 1
        self._maybe_pause()

    def _maybe_pause(self) -> None:
        """Stop after ``pause_after_epochs`` epochs or before ``pause_after_minutes`` runs out."""
        if self.current_epoch >= self.num_epochs:
            return
        cfg, why = self.hypera, None
        if cfg.pause_after_epochs and self._epochs_this_process >= cfg.pause_after_epochs:
            why = f"{self._epochs_this_process} epochs in this process (pause_after_epochs)"
        elif cfg.pause_after_minutes:
            elapsed = time() - self._process_start
            per_epoch = elapsed / max(1, self._epochs_this_process)
            if elapsed + per_epoch > 60 * cfg.pause_after_minutes:
                why = f"the time budget of {cfg.pause_after_minutes} min (pause_after_minutes)"
        if why is None:
            return
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
        local = self.logger.local_logger
        if self.local_rank == 0 and isinstance(local, HyperaLocalLogger):
            local.plot_panel(self.output_folder)

    def on_train_end(self):
        super().on_train_end()
        if self.coordinator is not None:
            self.coordinator.on_train_end()
            if self.local_rank == 0:
                self._plot_panel()
                HyperaLocalLogger.stack_panel(self.output_folder)
                out = Path(self.output_folder) / "hypera" / "policies.pt"
                out.parent.mkdir(parents=True, exist_ok=True)
                torch.save(self.coordinator.policies(), f"{out}.tmp")
                os.replace(f"{out}.tmp", out)

    # ---- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self, filename: str) -> None:
        if self.coordinator is None:
            return super().save_checkpoint(filename)
        with _checkpoint_extras({"hypera": self.coordinator.state_dict()}):
            super().save_checkpoint(filename)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net 2.8.1's load_checkpoint(dict) fails (it only binds `checkpoint` for paths): pass a path.
        if isinstance(filename_or_checkpoint, dict):
            tmp = Path(self.output_folder) / ".hypera_load.pth"
            torch.save(filename_or_checkpoint, tmp)
            try:
                return self.load_checkpoint(str(tmp))
            finally:
                tmp.unlink(missing_ok=True)
        super().load_checkpoint(filename_or_checkpoint)
        ckpt = torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False)
        self._hypera_state = ckpt.get("hypera")
        if self._hypera_state is None:
            self.print_to_log_file("HYPERA: checkpoint has no agent state; agents start fresh.")


def _variant(name: str, doc: str, **changes) -> type:
    def config_for_run(self) -> HyperaConfig:
        return HyperaTrainer.hypera_config.replace(**changes)

    cls = type(name, (HyperaTrainer,), {"__doc__": doc, "__module__": __name__,
                                        "hypera_config_for_run": config_for_run})
    cls.__qualname__ = name
    globals()[name] = cls
    return cls


def _transfer_config(mode: str):
    def config_for_run(self) -> HyperaConfig:
        src = os.environ.get(TRANSFER_ENV)
        if not src:
            raise ConfigError(f"{self.__class__.__name__} needs {TRANSFER_ENV}=/path/to/fold_X (or its "
                              "hypera/policies.pt) from an earlier HYPERA run.")
        return HyperaTrainer.hypera_config.replace(transfer=TransferConfig(source=src, mode=mode))
    return config_for_run


_VARIANTS = [
    _variant("HyperaTrainer_LR", "Only the learning-rate agent.", agents={"learning_rate": {}}),
    _variant("HyperaTrainer_Loss", "Only the loss-weight agent.", agents={"loss": {}}),
    _variant("HyperaTrainer_BatchSize", "Only the batch-size agent.", agents={"batch_size": {}}),
    _variant("HyperaTrainer_Aug", "Only the augmentation agent.", agents={"augmentation": {}}),
    _variant("HyperaTrainer_Reg", "Only the regularization agent.", agents={"regularization": {}}),
    _variant("HyperaTrainer_Optim", "Only the optimizer (momentum, Nesterov) agent.", agents={"optimization": {}}),
    _variant("HyperaTrainer_LRLoss", "Learning-rate and loss-weight agents.",
             agents={"learning_rate": {}, "loss": {}}),
    _variant("HyperaTrainer_Shadow", "All agents decide and log; nothing is applied (the control run).",
             shadow=True),
    _variant("HyperaTrainer_NoRollback", "All agents, rollback off.", safeguards=SafeguardConfig(rollback=False)),
    _variant("HyperaTrainer_NoTrust", "All agents, full bounds from the start.",
             safeguards=SafeguardConfig(trust=False)),
    _variant("HyperaTrainer_Priority", "All agents, 'priority' conflict strategy.", strategy="priority"),
    _variant("HyperaTrainer_Consensus", "All agents, 'consensus' conflict strategy.", strategy="consensus"),
]
for _mode, _name in (("warm_start", "HyperaTrainer_WarmStart"), ("frozen", "HyperaTrainer_Frozen")):
    _cls = type(_name, (HyperaTrainer,), {
        "__doc__": f"All agents, {_mode.replace('_', ' ')} from the policies in ${TRANSFER_ENV}.",
        "__module__": __name__, "hypera_config_for_run": _transfer_config(_mode)})
    _cls.__qualname__ = _name
    globals()[_name] = _cls
    _VARIANTS.append(_cls)

BUDGET_VARIANTS = register_budget_variants(nnUNetTrainer, __name__, with_plain_epochs=False)
for _base in [HyperaTrainer, *_VARIANTS]:
    BUDGET_VARIANTS += register_budget_variants(_base, __name__)

__all__ = ["HyperaTrainer", *[c.__name__ for c in _VARIANTS], *BUDGET_VARIANTS]
