"""The progress panel: as wide as nnU-Net's progress.png, one legend entry per knob, inside the figure,
switches as on/off steps."""

from __future__ import annotations

import math

import pytest

from hypera_nnunet.nnunet.knobs.optimizer import NESTEROV_OFF_BELOW
from hypera_nnunet.nnunet.progress_panel import (
    LOG_PREFIX,
    HyperaLocalLogger,
    panel_figure,
    progress_width,
    stack_panel,
    switch_on,
)

KNOBS = ("lr", "ce_dice_balance", "ds_decay", "batch_size", "aug_prob", "aug_strength", "weight_decay", "momentum",
         "nesterov")


def _series(epochs=6):
    s = {k: [1.0 + 0.01 * i * e for e in range(epochs)] for i, k in enumerate(KNOBS)}
    s["nesterov"] = [1.0, 1.0, 0.5, 0.5, 1.0, 1.0]  # log(0.5) < NESTEROV_OFF_BELOW: off in epochs 2-3
    return s


def test_legend_has_one_entry_per_knob_and_fits_in_the_figure():
    import matplotlib.pyplot as plt

    fig = panel_figure(_series(), 3000)
    try:
        legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()]
        texts = [t.get_text() for lg in legends for t in lg.get_texts()]
        assert texts == list(KNOBS[:-1]) + ["nesterov (on/off)"]
        fig.canvas.draw()
        r = fig.canvas.get_renderer()
        box = fig.bbox
        for lg in legends:
            b = lg.get_window_extent(r)
            assert box.x0 <= b.x0 and b.x1 <= box.x1 and box.y0 <= b.y0 and b.y1 <= box.y1
            assert all(b.x0 >= ax.get_window_extent(r).x1 for ax in fig.axes)  # outside the axes, on the right
        assert fig.get_size_inches()[0] * fig.dpi == 3000
        step = fig.axes[1].get_lines()[0]
        assert list(step.get_ydata()) == [1, 1, 0, 0, 1, 1, 1] and step.get_drawstyle() == "steps-post"
        assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["off", "on"]
    finally:
        plt.close(fig)


def test_switch_threshold():
    m = math.exp(NESTEROV_OFF_BELOW)
    assert switch_on("nesterov", [1.0, m, m * 0.999, 0.5]) == [1, 1, 0, 0]


def test_panel_png_is_as_wide_as_progress_png_and_is_stacked_below(tmp_path):
    from PIL import Image

    Image.new("RGB", (2400, 800), "white").save(tmp_path / "progress.png")  # a narrower nnU-Net plot than 3000
    assert progress_width(tmp_path) == 2400 and progress_width(tmp_path / "none") == 3000
    lg = HyperaLocalLogger()
    for k, ys in _series().items():
        lg.my_fantastic_logging[LOG_PREFIX + k] = ys
    lg.my_fantastic_logging["epoch_end_timestamps"] = list(range(6))
    lg.plot_panel(tmp_path)
    assert lg.panel_s > 0
    with Image.open(tmp_path / "progress_hypera.png") as im:
        assert im.size == (2400, 1200)
    stack_panel(tmp_path)
    with Image.open(tmp_path / "progress.png") as im:
        assert im.size == (2400, 2000)


@pytest.mark.parametrize("n_knobs", [1, 8])
def test_without_a_switch_one_axis(n_knobs):
    import matplotlib.pyplot as plt

    fig = panel_figure({k: [1.0, 1.1] for k in KNOBS[:n_knobs]})
    assert len(fig.axes) == 1 and len(fig.axes[0].get_legend().get_texts()) == n_knobs
    plt.close(fig)
