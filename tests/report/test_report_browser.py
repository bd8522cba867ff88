"""Each kind of report opened in headless Chromium: no console errors, every panel drawn, the expected panels,
titles and table cells read from the page's DOM."""

from __future__ import annotations

import pytest
from browser import chromium, console_errors, dom, open_report, require_browser
from report_fixtures import CAND, write_benchmark, write_fold

from hypera_nnunet.report import write_report

pytest.importorskip("plotly")


def test_run_report_in_chromium(tmp_path):
    out = write_report(write_fold(tmp_path / "fold_0"))
    with chromium() as d:
        open_report(d, out)
        errors = console_errors(d)
        page = dom(d)
        shot = tmp_path / "shot.png"
        d.save_screenshot(str(shot))
        viewport = tuple(d.execute_script("return [window.innerWidth, window.innerHeight];"))
    assert errors == []
    assert page["title"] == page["h1"][0] == "HYPERA run: HyperaTrainer_6epochs, fold_0"
    assert page["plots"] == page["drawn"] == 8
    assert page["panels"] == ["loss", "dice", "knob:lr", "knob:ce_dice_balance", "knob:nesterov", "rewards", "trust",
                              "overhead"]
    assert page["plot_titles"] == ["Loss", "Pseudo-Dice", "lr", "ce_dice_balance", "nesterov (switch)",
                                   "Reward per agent", "Trust per agent (share of its range it may use)",
                                   "Agents' time per epoch (overhead_s)"]
    assert page["h2"] == ["Learning curves", "Knobs", "Agents"]
    summary = dict(page["cells"]["summary"][1:])
    assert summary["rollbacks"] == "epoch 4 (pseudo-Dice EMA dropped by 0.2)"
    assert summary["exploration phases"] == "explore 0-2, exploit 3-5"
    from PIL import Image

    with Image.open(shot) as im:  # the screenshot is of the page as drawn: not blank, the viewport's size
        assert im.size == viewport and im.width == 1400
        assert len(im.convert("RGB").getcolors(1 << 20)) > 50


def test_benchmark_report_in_chromium(tmp_path):
    out = write_report(write_benchmark(tmp_path / "bench"))
    with chromium() as d:
        open_report(d, out)
        errors = console_errors(d)
        page = dom(d)
    assert errors == []
    assert page["title"] == "Benchmark: Dataset904_Hippocampus 3d_fullres, protocol cpu-v2"
    assert page["plots"] == page["drawn"] == 3
    assert page["tables"] == ["run_level", "dice_per_class", "surface_per_class", f"case_level:{CAND}", "time",
                              "power"]
    assert page["h2"][0] == "Run level: mean foreground Dice per training run, paired"
    power = page["cells"]["power"]
    assert power[0] == ["comparison", "runs measured", "sd of differences", "5 pairs", "10 pairs", "15 pairs"]
    assert power[1][1:4] == ["3", "0.0300", "0.0499"]  # (2.776445 + 0.940965) * 0.03 / sqrt(5) = 0.04987


def test_missing_browser_fails_under_ci_and_skips_elsewhere(monkeypatch):
    import browser

    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as e:
        require_browser()
    assert str(e.value).startswith("headless Chromium is needed for the report tests: apt-get install -y chromium "
                                   "chromium-driver")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        require_browser()


def test_study_report_in_chromium(tmp_path):
    pytest.importorskip("optuna")
    from hypera_nnunet.cli import main

    space = tmp_path / "space.yaml"
    space.write_text("objective: curve\nfidelity: {min_epochs: 2, max_epochs: 18}\nparams:\n"
                     "  nnunet.initial_lr: {low: 0.001, high: 0.1, log: true}\n"
                     "  learning.gradient_steps: {choices: [2, 4, 8]}\n")
    study = tmp_path / "study"
    assert main(["search", "run", str(space), "--study", str(study), "-n", "10", "--seed", "0"]) == 0
    out = write_report(study)
    assert out == study / "report.html"
    with chromium() as d:
        open_report(d, out)
        errors = console_errors(d)
        page = dom(d)
    assert errors == []
    assert page["title"] == "Search study: study (curve objective, trainer nnUNetTrainerConfigured)"
    assert page["panels"] == ["history", "parallel", "importance", "curves", "budget"]
    assert page["plots"] == page["drawn"] == 5
    assert page["tables"] == ["summary", "best", "trials"]
    assert page["h2"] == ["History and parameters", "Budget"]
    assert len(page["cells"]["trials"]) == 11  # header + 10 trials
    summary = dict(page["cells"]["summary"][1:])
    assert summary["trials"] == "10" and summary["budget spent"].endswith("full trainings of 18 epochs")
