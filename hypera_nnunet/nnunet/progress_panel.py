"""The knobs' multipliers as a plot: ``progress_hypera.png`` beside nnU-Net's ``progress.png``.

:class:`HyperaLocalLogger` is nnU-Net's local logger plus the panel. It draws every ``PANEL_EVERY``
epochs, at a pause and at the end (drawing costs about 0.2 s on 2 CPU cores; re-encoding nnU-Net's
3000 x 5400-pixel ``progress.png`` every epoch cost 0.5-2 s), and at the end of training the panel is
appended below ``progress.png`` (:func:`stack_panel`). The multipliers are in ``decisions.jsonl`` at
every epoch. ``panel_s`` accumulates the drawing time (reported with the agents' overhead).

The panel is as wide as ``progress.png`` (nnU-Net draws it at ``figsize=(30, 54)`` and 100 dpi: 3000 pixels;
the width is read from the file when it exists), one line per knob with its legend outside the axes on the
right, and switches (``nesterov``) as on/off steps on an axis of their own below.
"""

from __future__ import annotations

import math
import os
from time import perf_counter

from nnunetv2.training.logging.nnunet_logger import LocalLogger

from hypera_nnunet.common.atomic_io import atomic_write
from hypera_nnunet.nnunet.knobs.optimizer import NESTEROV_OFF_BELOW

LOG_PREFIX = "hypera_"
PANEL_EVERY = 50
DPI = 100
WIDTH_PX = 3000  # nnU-Net's progress.png: figsize (30, 54) at matplotlib's default 100 dpi
HEIGHT_IN = 12
FONT_SIZE = 25  # nnU-Net's plot uses seaborn's font_scale=2.5 of matplotlib's 10 pt
#: switch knobs: on where the log-multiplier is at least this (and nnU-Net's own setting is on)
SWITCHES = {"nesterov": NESTEROV_OFF_BELOW}
AXES_RIGHT = 0.84  # the axes end here (figure fraction); the legend is to their right


class HyperaLocalLogger(LocalLogger):
    """:param verbose: nnU-Net's logger option."""

    PANEL_EVERY = PANEL_EVERY

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
        keys = [k for k in self.my_fantastic_logging if k.startswith(LOG_PREFIX)]
        if not keys or self._panel_epochs == self._epochs():
            return
        self._panel_epochs = self._epochs()
        t0 = perf_counter()
        import matplotlib.pyplot as plt

        series = {k[len(LOG_PREFIX):]: list(self.my_fantastic_logging[k]) for k in keys}
        fig = panel_figure(series, progress_width(output_folder))
        atomic_write(os.path.join(output_folder, "progress_hypera.png"),
                     lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
        plt.close(fig)
        self.panel_s += perf_counter() - t0


def progress_width(output_folder) -> int:
    """The pixel width of ``progress.png`` in ``output_folder`` (read from its header), else :data:`WIDTH_PX`."""
    path = os.path.join(output_folder, "progress.png")
    if os.path.isfile(path):
        from PIL import Image

        try:
            with Image.open(path) as im:
                return int(im.width)
        except OSError:
            pass
    return WIDTH_PX


def switch_on(knob: str, multipliers: list[float]) -> list[int]:
    """1 where the switch keeps nnU-Net's setting, 0 where the agent switched it off."""
    return [int(m is not None and m > 0 and math.log(m) >= SWITCHES[knob]) for m in multipliers]


def panel_figure(series: dict[str, list[float]], width_px: int = WIDTH_PX):
    """The panel as a matplotlib figure ``width_px`` wide: multipliers per knob (in the given order) with
    nnU-Net's value as a dashed line at 1, switches as steps below; the legends outside the axes, on the right."""
    import matplotlib.pyplot as plt

    knobs = [k for k in series if k not in SWITCHES]
    switches = [k for k in series if k in SWITCHES]
    with plt.rc_context({"font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE, "legend.fontsize": FONT_SIZE * 0.8}):
        fig = plt.figure(figsize=(width_px / DPI, HEIGHT_IN), dpi=DPI)
        grid = fig.add_gridspec(2 if switches else 1, 1, height_ratios=[4, 1] if switches else [1],
                                left=0.06, right=AXES_RIGHT, top=0.93, bottom=0.1, hspace=0.35)
        ax = fig.add_subplot(grid[0])
        cmap = plt.get_cmap("tab10")
        for i, k in enumerate(knobs):
            ys = series[k]
            ax.plot(range(len(ys)), ys, label=k, linewidth=4, color=cmap(i % 10))
        ax.axhline(1.0, color="k", ls="--", linewidth=2)
        ax.text(0.0, 1.0, " nnU-Net's value (x1)", transform=ax.get_yaxis_transform(), va="bottom", ha="left",
                fontsize=FONT_SIZE * 0.7)
        ax.set_ylabel("multiplier of\nnnU-Net's value")
        ax.set_title("HYPERA: each knob's multiplier of nnU-Net's value", loc="left")
        ax.grid(alpha=0.3)
        if knobs:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
        axes = [ax]
        if switches:
            sx = fig.add_subplot(grid[1], sharex=ax)
            for i, k in enumerate(switches):
                on = switch_on(k, series[k])
                xs = list(range(len(on) + 1))
                sx.step(xs, [*on, on[-1]] if on else [], where="post", linewidth=4, label=f"{k} (on/off)",
                        color=cmap((len(knobs) + i) % 10))
            sx.set_yticks([0, 1], ["off", "on"])
            sx.set_ylim(-0.3, 1.3)
            sx.grid(alpha=0.3)
            sx.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
            axes.append(sx)
            ax.tick_params(labelbottom=False)
        from matplotlib.ticker import MaxNLocator

        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[-1].set_xlabel("epoch")
    return fig


def stack_panel(output_folder) -> None:
    """Append ``progress_hypera.png`` below ``progress.png`` (once, at the end of training)."""
    main = os.path.join(output_folder, "progress.png")
    extra = os.path.join(output_folder, "progress_hypera.png")
    if os.path.isfile(main) and os.path.isfile(extra):
        stack_png(main, extra)


def stack_png(main: str, extra: str) -> None:
    """Append ``extra`` below ``main``; 8-bit pixels and fast PNG compression (a float round trip through
    matplotlib took about 2 s). ``extra`` is kept, so a plot of the trajectories alone stays available."""
    from PIL import Image

    with Image.open(main) as a_img, Image.open(extra) as b_img:
        a, b = a_img.convert("RGB"), b_img.convert("RGB")
    out = Image.new("RGB", (max(a.width, b.width), a.height + b.height), (255, 255, 255))
    out.paste(a, (0, 0))
    out.paste(b, (0, a.height))
    atomic_write(main, lambda tmp: out.save(tmp, format="PNG", compress_level=1))
