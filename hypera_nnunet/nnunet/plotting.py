"""Fewer progress plots: nnU-Net's ``progress.png`` every N epochs instead of every epoch (``$HYPERA_PLOT_EVERY``).

nnU-Net redraws ``progress.png`` with matplotlib at the end of every epoch. On the 2-core CPU machine that took
71 of the 386 s of a ``cpu-v3`` training's epochs, 18% (``docs/benchmarks.md``, wall-time split), for a picture
nobody looks at mid-run. With ``HYPERA_PLOT_EVERY=N`` the plot is drawn after every N-th epoch and after the last;
nothing that nnU-Net trains changes (the weights are bit-identical), only the picture is older in between.
"""

from __future__ import annotations

import os

from hypera_nnunet.errors import HyperaError, exit_with_error

PLOT_EVERY_ENV = "HYPERA_PLOT_EVERY"


def plot_every() -> int:
    """``$HYPERA_PLOT_EVERY`` (default 1: every epoch, as nnU-Net)."""
    raw = os.environ.get(PLOT_EVERY_ENV, "").strip()
    if not raw:
        return 1
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        raise HyperaError(f"{PLOT_EVERY_ENV}={raw!r}: expected an integer >= 1 (epochs between progress plots)")
    return n


class ThinPlots:
    """Mixin: draw ``progress.png`` every ``$HYPERA_PLOT_EVERY`` epochs and after the last one."""

    def on_train_start(self):
        super().on_train_start()
        try:
            n = plot_every()
        except HyperaError as e:
            exit_with_error(e)
        if n == 1:
            return
        plot = self.logger.plot_progress_png

        def thinned(output_folder):
            e = self.current_epoch  # nnU-Net plots before it advances the epoch
            if (e + 1) % n == 0 or e + 1 >= self.num_epochs:
                return plot(output_folder)
            return None

        self.logger.plot_progress_png = thinned
