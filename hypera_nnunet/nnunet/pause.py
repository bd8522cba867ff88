"""Pause and time budget: stop a training cleanly so that ``nnUNetv2_train ... --c`` resumes it."""

from __future__ import annotations

from time import time

from hypera_nnunet.settings import HyperaConfig


class PauseBudget:
    """:param config: ``pause_after_epochs`` and ``pause_after_minutes`` (both None: never pause)."""

    def __init__(self, config: HyperaConfig) -> None:
        self.config = config
        self.start = time()
        self.epochs = 0  # epochs finished in this process

    def epoch_done(self, epochs_left: int) -> str | None:
        """Count one finished epoch; why to pause now, or None (never with no epoch left)."""
        self.epochs += 1
        cfg = self.config
        if epochs_left <= 0:
            return None
        if cfg.pause_after_epochs and self.epochs >= cfg.pause_after_epochs:
            return f"{self.epochs} epochs in this process (pause_after_epochs)"
        if cfg.pause_after_minutes:
            elapsed = time() - self.start
            if elapsed + elapsed / self.epochs > 60 * cfg.pause_after_minutes:
                return f"the time budget of {cfg.pause_after_minutes} min (pause_after_minutes)"
        return None
