"""Checkpoints: nnU-Net's own file, written atomically, and HYPERA's state beside it.

nnU-Net builds its checkpoint dict inside ``save_checkpoint`` and writes it straight to the target
(a kill during the write leaves a torn ``checkpoint_latest.pth``). :class:`SafeCheckpoints` overrides
``save_checkpoint`` to let nnU-Net write a temporary file that is then renamed, and writes the trainer's
extras (:meth:`SafeCheckpoints.checkpoint_extras`: the agents' state, the seeded generators' states)
first, to ``hypera/<checkpoint name>.e<epoch>.pt`` for the epoch the checkpoint will hold. Only after the
checkpoint is in place are the older extras of that name removed, so whatever moment a run is killed, the
checkpoint on disk has its extras beside it. ``load_checkpoint`` checks the file first (one line naming a
damaged checkpoint), then hands the extras of the checkpoint's own epoch to
:meth:`SafeCheckpoints.load_checkpoint_extras`. Checkpoints written before this layout carry the agents'
state inside, under ``"hypera"``, and are still read.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_torch_save, atomic_write
from hypera_nnunet.common.safe_load import load_torch_file
from hypera_nnunet.errors import HyperaError, exit_with_error

HYPERA_DIR = "hypera"
LEGACY_KEY = "hypera"
#: the checkpoints ``nnUNetv2_train --c`` resumes from, in the order it looks for them
RESUME_ORDER = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


def agent_state_path(checkpoint: str | os.PathLike, epoch: int) -> Path:
    p = Path(checkpoint)
    return p.parent / HYPERA_DIR / f"{p.stem}.e{int(epoch):05d}.pt"


def _agent_state_files(checkpoint: str | os.PathLike) -> dict[int, Path]:
    p = Path(checkpoint)
    pattern = re.compile(rf"^{re.escape(p.stem)}\.e(\d+)\.pt$")
    folder = p.parent / HYPERA_DIR
    out = {}
    if folder.is_dir():
        for f in folder.iterdir():
            m = pattern.match(f.name)
            if m:
                out[int(m.group(1))] = f
    return out


def save_agent_state(state: dict, checkpoint: str | os.PathLike, epoch: int) -> Path:
    """Write the agents' state for ``checkpoint`` at ``epoch`` (before the checkpoint itself)."""
    return atomic_torch_save(state, agent_state_path(checkpoint, epoch))


def prune_agent_state(checkpoint: str | os.PathLike, keep_epoch: int) -> None:
    """Remove the agent-state files of ``checkpoint`` other than ``keep_epoch``'s (after the checkpoint)."""
    for epoch, f in _agent_state_files(checkpoint).items():
        if epoch != keep_epoch:
            f.unlink(missing_ok=True)


def load_agent_state(checkpoint: str | os.PathLike, epoch: int, legacy: bool = True) -> dict | None:
    """The extras saved with ``checkpoint`` at ``epoch`` (``{"hypera": agent state, "rng": ...}``); for a
    checkpoint of the earlier layout (``legacy``), its in-checkpoint agent state as ``{"hypera": ...}``; or None."""
    f = agent_state_path(checkpoint, epoch)
    if f.is_file():
        return load_torch_file(f, "HYPERA checkpoint extras")
    if not legacy:
        return None
    import torch

    # nnU-Net loads its own checkpoints with weights_only=False; the legacy copy inside is read the same way
    legacy = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = legacy.get(LEGACY_KEY) if isinstance(legacy, dict) else None
    return None if state is None else {"hypera": state}


def check_checkpoint(path: str | os.PathLike) -> None:
    """Raise one clear error if ``path`` is not an intact torch checkpoint, naming the others that exist.

    A torch checkpoint is a zip archive: its central directory and every member's CRC are checked, which
    reads the file once and unpickles nothing."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as z:
            bad = z.testzip()
        problem = None if bad is None else f"member {bad} fails its CRC check"
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        problem = str(e) or type(e).__name__
    if problem is None:
        return
    others = [n for n in RESUME_ORDER if n != p.name and (p.parent / n).is_file()]
    alt = (f"; {' and '.join(others)} exist{'s' if len(others) == 1 else ''} in {p.parent}: to resume from one, "
           f"copy it to {p.name} yourself (nothing falls back silently)") if others else \
        "; no other checkpoint exists there: train again without --c"
    raise HyperaError(f"checkpoint {p} is damaged ({problem}){alt}")


def resume_checkpoint(fold_dir: str | os.PathLike) -> Path | None:
    """The checkpoint ``nnUNetv2_train --c`` will load in ``fold_dir`` (nnU-Net's order: final, latest,
    best), or None when there is none."""
    for name in RESUME_ORDER:
        p = Path(fold_dir) / name
        if p.is_file():
            return p
    return None


class SafeCheckpoints:
    """Mixin before ``nnUNetTrainer`` in the bases: atomic checkpoints with extras beside them."""

    #: whether a checkpoint without an extras file may carry agent state inside (HYPERA's earlier layout)
    reads_legacy_agent_state = False

    def checkpoint_extras(self) -> dict:
        """What to save beside the checkpoint (subclasses add to ``super()``'s)."""
        return {}

    def load_checkpoint_extras(self, extras: dict | None) -> None:
        """Receive what :meth:`checkpoint_extras` saved with the checkpoint being loaded (None: nothing)."""

    def save_checkpoint(self, filename: str) -> None:
        if self.local_rank != 0 or self.disable_checkpointing:  # nnU-Net writes nothing then (and says so)
            return super().save_checkpoint(filename)
        epoch = self.current_epoch + 1  # what nnU-Net records in the checkpoint
        try:
            extras = self.checkpoint_extras()
            if extras:
                save_agent_state(extras, filename, epoch)
            atomic_write(filename, super().save_checkpoint)  # nnU-Net writes the temporary file itself
            prune_agent_state(filename, epoch if extras else -1)
        except HyperaError as e:  # a full disk: one line, the previous checkpoint intact
            exit_with_error(e)

    def on_train_end(self):
        super().on_train_end()  # nnU-Net removes checkpoint_latest.pth here: its extras go with it
        latest = Path(self.output_folder) / "checkpoint_latest.pth"
        if self.local_rank == 0 and not latest.exists():
            prune_agent_state(latest, -1)

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        # nnU-Net 2.8.1's load_checkpoint(dict) fails (it only binds `checkpoint` for paths): pass a path.
        if isinstance(filename_or_checkpoint, dict):
            import torch

            tmp = Path(self.output_folder) / ".hypera_load.pth"
            torch.save(filename_or_checkpoint, tmp)
            try:
                return self.load_checkpoint(str(tmp))
            finally:
                tmp.unlink(missing_ok=True)
        try:
            check_checkpoint(filename_or_checkpoint)
        except HyperaError as e:
            exit_with_error(e)
        super().load_checkpoint(filename_or_checkpoint)
        self.load_checkpoint_extras(load_agent_state(filename_or_checkpoint, self.current_epoch,
                                                     legacy=self.reads_legacy_agent_state))
