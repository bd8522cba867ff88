"""The report of a real tiny training (HyperaTrainer, 3 epochs x 5 iterations on the Hippocampus subset), opened in
headless Chromium; the progress panel below nnU-Net's progress.png at its full width."""

from __future__ import annotations

import json

import pytest
from browser import chromium, console_errors, dom, open_report

from hypera_nnunet.data import run_nnunet
from hypera_nnunet.report import write_report

pytestmark = pytest.mark.nnunet
TRAINER = "HyperaTrainer_3epochs_5iters"
PLANS = "hyperaCPUPlans"


@pytest.fixture(scope="module")
def fold(hippo):
    env, name, root = hippo
    run_nnunet(["nnUNetv2_train", "904", "3d_fullres", "1", "-tr", TRAINER, "-p", PLANS, "-device", "cpu"], env=env)
    return root / "res" / name / f"{TRAINER}__{PLANS}__3d_fullres" / "fold_1"


def test_report_of_a_real_run_in_chromium(fold):
    lines = [json.loads(x) for x in (fold / "hypera" / "decisions.jsonl").read_text().splitlines() if x.strip()]
    knobs = list(lines[0]["multipliers"])
    assert "nesterov" in knobs and len(lines) == 3
    out = write_report(fold)
    assert out == fold / "hypera" / "report.html"
    with chromium() as d:
        open_report(d, out)
        errors = console_errors(d)
        page = dom(d)
    assert errors == []
    assert page["title"] == f"HYPERA run: {TRAINER}, fold_1"
    assert page["plots"] == page["drawn"] == 5 + len(knobs)  # losses, Dice, one per knob, rewards, trust, time
    assert page["panels"] == ["loss", "dice"] + [f"knob:{k}" for k in knobs] + ["rewards", "trust", "overhead"]
    assert "nesterov (switch)" in page["plot_titles"]
    summary = dict(page["cells"]["summary"][1:])
    assert summary["epochs recorded"] == "3 (0-2)" and summary["trainer"] == TRAINER
    assert summary["agents"] == ", ".join(json.loads((fold / "hypera" / "config.json").read_text())["agents"])


def test_progress_panel_is_full_width_below_nnunets_plot(fold):
    from PIL import Image

    with Image.open(fold / "progress.png") as main, Image.open(fold / "progress_hypera.png") as panel:
        assert panel.width == main.width == 3000  # nnU-Net: figsize (30, 54) at 100 dpi
        assert main.height == 5400 + panel.height == 6600
