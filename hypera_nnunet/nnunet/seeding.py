"""Seeded trainings, for comparisons with common random numbers.

nnU-Net seeds nothing, so two runs of one trainer differ. With ``HYPERA_SEED=<int>`` set, a training seeds
Python's ``random``, numpy's global generator and torch's CPU and CUDA generators at the start of
``initialize()`` (network initialisation) and again at the start of ``on_train_start()`` (data split,
sampling and augmentation), from seeds derived from (seed, fold): on the CPU with ``nnUNet_n_proc_DA=0``
two such runs are bit-identical (``tests/nnunet/test_seeding_hippocampus.py``). The HYPERA agents draw only
from their own generators, so ``HyperaTrainer_Shadow`` with a seed trains exactly the weights
``nnUNetTrainer`` trains with it: both arms of a comparison see the same nnU-Net streams.

Each DDP rank gets its own streams (from the rank too), and with augmentation workers
(``nnUNet_n_proc_DA`` > 0) each worker gets a seed derived from (seed, fold, rank, loader build, worker):
nnU-Net passes none, so they would draw fresh OS entropy (:meth:`SeededTraining.get_dataloaders`).

A checkpoint carries the global generators' states (beside it, like the agents' state), and ``--c``
restores them instead of seeding again. What a resumed run does *not* reproduce: nnU-Net's dataloaders
are rebuilt on resume (workers get the seeds of a new build), and the workers' own generators are in no
checkpoint; with ``nnUNet_n_proc_DA=0`` the resumed run continues the saved global streams, but its
batches are not those of the uninterrupted run, because the rebuilt loader starts its own sampling
afresh. A resumed run is reproducible (the same checkpoint and seed resume the same way), not identical
to the run that was not interrupted.
"""

from __future__ import annotations

import os
import random

import numpy as np

from hypera_nnunet.errors import HyperaError, exit_with_error
from hypera_nnunet.nnunet.checkpoint import SafeCheckpoints

SEED_ENV = "HYPERA_SEED"
#: what each derived stream seeds (the salt of its ``SeedSequence``)
STREAMS = {"initialize": 0, "train_start": 1, "agents": 2, "workers": 3}


def run_seed() -> int | None:
    """``$HYPERA_SEED`` as an int, or None when it is not set."""
    raw = os.environ.get(SEED_ENV)
    if raw is None or raw.strip() == "":
        return None
    try:
        seed = int(raw)
    except ValueError:
        raise HyperaError(f"{SEED_ENV}={raw!r} is not an integer") from None
    if not 0 <= seed < 2**32:
        raise HyperaError(f"{SEED_ENV}={seed} must be in [0, 2^32)")
    return seed


def derive(seed: int, fold: int | str, stream: str, *more: int) -> int:
    """A 32-bit seed for ``stream`` of fold ``fold`` (and ``more``: a DDP rank, a worker index): distinct
    folds, streams, ranks and workers get independent seeds."""
    fold_key = 1_000_000 if str(fold) == "all" else int(fold)
    key = [int(seed), fold_key, STREAMS[stream], *(int(m) for m in more)]
    return int(np.random.SeedSequence(key).generate_state(1)[0])


def seed_global(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # every device's generator


def global_rng_state() -> dict:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_global_rng_state(state: dict) -> None:
    import torch

    random.setstate(_tuples(state["python"]))
    np.random.set_state(_tuples(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    """Python's and numpy's states are tuples; a round trip through a safe loader may give lists."""
    if isinstance(x, list):
        return tuple(_tuples(v) for v in x)
    return x


def _seed_or_exit() -> int | None:
    try:
        return run_seed()
    except HyperaError as e:
        exit_with_error(e)


class SeededTraining(SafeCheckpoints):
    """Mixin before ``nnUNetTrainer`` in the bases: seeds nnU-Net's streams when ``$HYPERA_SEED`` is set,
    and carries the generators' states in checkpoints (through :class:`SafeCheckpoints`' extras)."""

    hypera_seed: int | None = None
    _rng_resumed: dict | None = None
    _loader_starts = 0  # dataloader (re)builds so far: each gets fresh worker seeds

    def initialize(self):
        self.hypera_seed = _seed_or_exit()
        if self.hypera_seed is not None and not self.was_initialized:
            seed_global(derive(self.hypera_seed, self.fold, "initialize", self.local_rank))
        super().initialize()

    def on_train_start(self):
        # nnU-Net's on_train_start initialises first if needed; do it here, so that seeding below is not
        # overwritten by initialize()'s own
        if not self.was_initialized:
            self.initialize()
        if self._rng_resumed is not None:
            set_global_rng_state(self._rng_resumed)
            self._rng_resumed = None
        elif self.hypera_seed is not None:  # each DDP rank its own stream: ranks must sample different patches
            seed_global(derive(self.hypera_seed, self.fold, "train_start", self.local_rank))
        super().on_train_start()

    def get_dataloaders(self):
        """nnU-Net's loaders; seeded, each augmentation worker gets a seed of its own (nnU-Net passes none,
        so every worker would draw fresh OS entropy). The workers were already started by nnU-Net; they are
        restarted once with their seeds (only when seeded and ``nnUNet_n_proc_DA`` > 0)."""
        from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter

        loaders = super().get_dataloaders()
        if self.hypera_seed is not None:
            self._loader_starts += 1
            for k, dl in enumerate(loaders):
                if isinstance(dl, NonDetMultiThreadedAugmenter):
                    dl._finish()
                    dl.seeds = [derive(self.hypera_seed, self.fold, "workers", self.local_rank, self._loader_starts,
                                       k, i) for i in range(dl.num_processes)]
                    next(dl)
        return loaders

    def checkpoint_extras(self) -> dict:
        extras = super().checkpoint_extras()
        if self.hypera_seed is not None:
            extras["rng"] = {"seed": self.hypera_seed, **global_rng_state()}
        return extras

    def load_checkpoint_extras(self, extras: dict | None) -> None:
        super().load_checkpoint_extras(extras)
        if extras and extras.get("rng") is not None and _seed_or_exit() is not None:
            self._rng_resumed = extras["rng"]
