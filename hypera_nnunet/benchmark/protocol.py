"""Fixed benchmark protocols: which plans, which budget, how many trainings at once.

A protocol is frozen once results exist under it: a trainer's name is its results folder in nnU-Net's
layout, so changing the budget of a protocol would silently mix runs. Add a new protocol instead.

* ``cpu``: reduced plans (``hyperaCPUPlans``: nnU-Net's patch size, spacing, normalisation and
  topology; batch 2 and a quarter of the feature widths), ``<Trainer>_20epochs_25iters``, one training
  at a time. Measured cost and the reasons for the choice are in ``docs/benchmark_protocol.md``.
* ``cpu-v2``: the same plans, ``<Trainer>_50epochs_25iters`` (1250 steps). Replaces ``cpu``, whose 500
  steps left folds in nnU-Net's all-background phase (Dice 0). About 5.5 minutes per training unshared.
* ``cpu-v3``: the ``2d`` configuration (batch 16, half the features), ``<Trainer>_50epochs_25iters``,
  seeded; calibrated with nnU-Net's own trainer before any HYPERA run (``docs/benchmark_protocol.md``).
* ``gpu``: nnU-Net's own plans on one GPU, ``<Trainer>_20epochs_50iters``, several trainings sharing
  the GPU at once, for the lent GPU machine (10 minutes per command: the harness resumes with ``--c``).
* ``gpu-full``: nnU-Net's own plans and its full budget (plain ``nnUNetTrainer`` / ``HyperaTrainer``:
  1000 epochs of 250 iterations), for when time allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hypera_nnunet.data import CPU_ENV
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.budget import EPOCHS, ITERS


@dataclass(frozen=True)
class ReducedPlans:
    """A plans file written with :func:`hypera_nnunet.nnunet.plans.write_reduced_plans`."""

    name: str = "hyperaCPUPlans"
    batch_size: int = 2
    feature_divisor: int = 4
    configuration: str = "3d_fullres"


@dataclass(frozen=True)
class Protocol:
    name: str
    plans: str
    epochs: int | None
    iters: int | None
    device: str
    concurrency: int
    env: tuple[tuple[str, str], ...] = ()
    reduced_plans: ReducedPlans | None = None
    description: str = ""
    predict_env: tuple[tuple[str, str], ...] = field(default=())
    configuration: str = "3d_fullres"  # the nnU-Net configuration the protocol was calibrated on (-c's default)
    #: pre-registered convergence rule of a calibrated protocol: per-class and mean foreground validation Dice
    converged_class_dice: float | None = None
    converged_mean_dice: float | None = None

    def trainer_name(self, base: str) -> str:
        """The registered trainer that runs ``base`` at this protocol's budget.

        ``nnUNetTrainer`` at ``E`` epochs of ``I`` iterations is ``nnUNetTrainer_<E>epochs_<I>iters``; a name
        that already carries a budget (``..._<E>epochs...``) is refused, so the budget stays the protocol's.
        """
        if "epochs" in base:
            raise HyperaError(f"trainer '{base}' already names a budget; give the base name (e.g. "
                              f"'{base.split('_')[0]}') and let protocol '{self.name}' set the budget, "
                              "or use --epochs/--iters.")
        if self.epochs is None:
            return base
        return f"{base}_{self.epochs}epochs" + (f"_{self.iters}iters" if self.iters is not None else "")

    def with_budget(self, epochs: int | None, iters: int | None) -> Protocol:
        """This protocol with another budget from the registered grid (a different, named protocol)."""
        if epochs is None and iters is None:
            return self
        e = self.epochs if epochs is None else epochs
        i = self.iters if iters is None else iters
        if e not in EPOCHS:
            raise HyperaError(f"--epochs {e} is not a registered budget (choose from {list(EPOCHS)}).")
        if i is not None and i not in ITERS:
            raise HyperaError(f"--iters {i} is not a registered budget (choose from {list(ITERS)}).")
        return replace(self, name=f"{self.name}-custom-{e}x{i}", epochs=e, iters=i)

    def to_dict(self) -> dict:
        return {"name": self.name, "plans": self.plans, "epochs": self.epochs, "iters": self.iters,
                "val_iters": None if self.iters is None else max(2, self.iters // 5), "device": self.device,
                "concurrency": self.concurrency, "env": dict(self.env),
                "reduced_plans": None if self.reduced_plans is None else vars(self.reduced_plans),
                "configuration": self.configuration, "converged_class_dice": self.converged_class_dice,
                "converged_mean_dice": self.converged_mean_dice, "description": self.description}


_CPU_ENV = tuple(CPU_ENV.items())

PROTOCOLS: dict[str, Protocol] = {
    "cpu": Protocol(
        name="cpu", plans="hyperaCPUPlans", epochs=20, iters=25, device="cpu", concurrency=1, env=_CPU_ENV,
        reduced_plans=ReducedPlans(),
        description="2-core CPU: hyperaCPUPlans (nnU-Net's patch size, batch 2, features/4), 20 epochs x 25 "
                    "iterations (+5 validation iterations), one training at a time."),
    "cpu-v2": Protocol(
        name="cpu-v2", plans="hyperaCPUPlans", epochs=50, iters=25, device="cpu", concurrency=1, env=_CPU_ENV,
        reduced_plans=ReducedPlans(),
        description="2-core CPU, unshared: hyperaCPUPlans (nnU-Net's patch size, batch 2, features/4), 50 epochs x "
                    "25 iterations (1250 training steps, +5 validation iterations per epoch), one training at a "
                    "time (two at once are 5x slower per step: nnU-Net sets torch to all cores on CPU)."),
    "cpu-v3": Protocol(
        name="cpu-v3", plans="hyperaCPU2dB16Plans", epochs=50, iters=25, device="cpu", concurrency=1, env=_CPU_ENV,
        reduced_plans=ReducedPlans(name="hyperaCPU2dB16Plans", batch_size=16, feature_divisor=2, configuration="2d"),
        configuration="2d", converged_class_dice=0.70, converged_mean_dice=0.75,
        description="2-core CPU, unshared, calibrated before any HYPERA run: the 2d configuration with "
                    "hyperaCPU2dB16Plans (nnU-Net's 2d patch size, batch 16, features/2), 50 epochs x 25 iterations "
                    "(1250 training steps), seeded; converged = every foreground class >= 0.70 and mean >= 0.75 "
                    "validation Dice (docs/benchmark_protocol.md)."),
    "cpu-v4": Protocol(
        name="cpu-v4", plans="hyperaCPU2dB16Plans", epochs=60, iters=25, device="cpu", concurrency=1,
        env=(*_CPU_ENV, ("HYPERA_PLOT_EVERY", "10")),
        reduced_plans=ReducedPlans(name="hyperaCPU2dB16Plans", batch_size=16, feature_divisor=2, configuration="2d"),
        configuration="2d", converged_class_dice=0.70, converged_mean_dice=0.75,
        description="2-core CPU, unshared, candidate E (written before its runs): cpu-v3's plans with 60 epochs x "
                    "25 iterations (1500 training steps), nnU-Net's progress plot every 10 epochs instead of every "
                    "epoch (18% of cpu-v3's epoch time, bit-identical weights), seeded; converged as cpu-v3."),
    "gpu": Protocol(
        name="gpu", plans="nnUNetPlans", epochs=20, iters=50, device="cuda", concurrency=10,
        env=(("nnUNet_n_proc_DA", "1"), ("nnUNet_def_n_proc", "1")),
        description="one lent GPU (16 cores): nnU-Net's plans, 20 epochs x 50 iterations, all trainings of a "
                    "fold set at once on the GPU, one data-augmentation worker each; resumable with --c across "
                    "10-minute commands."),
    "gpu-full": Protocol(
        name="gpu-full", plans="nnUNetPlans", epochs=None, iters=None, device="cuda", concurrency=2,
        env=(("nnUNet_n_proc_DA", "6"),),
        description="nnU-Net's plans and full budget (1000 epochs x 250 iterations), two trainings at once."),
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise HyperaError(f"unknown protocol '{name}' (choose from {sorted(PROTOCOLS)}).") from None
