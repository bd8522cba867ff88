"""What the demo prints about its run: not evidence, switches on/off, and where its report is."""

from __future__ import annotations

from pathlib import Path

from report_fixtures import write_fold

from hypera_nnunet.demo import DemoSettings, _agent_changes, results_table, write_run_report


def test_switches_are_on_off_and_multipliers_stay_multipliers(tmp_path):
    lines = _agent_changes(write_fold(tmp_path / "fold_0", torn_line=False))
    assert lines == ["lr: x0.9 .. x1.35, last x0.9", "ce_dice_balance: x0.9 .. x0.9, last x0.9",
                     "nesterov (switch): off in epochs 2-3, on in the others",
                     "rollbacks: 1; agents' time: 0.08 s over 6 epochs"]


def test_table_says_it_is_not_evidence_and_points_to_the_benchmarks():
    rows = {t: {"dice": {1: 0.5, 2: 0.25}, "train_s": 10.0, "predict_s": 2.0} for t in ("A", "B")}
    out = results_table(rows, ["A", "B"], DemoSettings())
    assert out[0] == ("One short run on synthetic data (fold 0, 10 epochs x 10 iterations, 4 test volumes): it shows "
                      "the loop working; it is not evidence about HYPERA.")
    assert "docs/benchmarks.md" in out[1]
    assert out[-1].split() == ["B", "0.5000", "0.2500", "0.3750", "10.0", "2.0"]


def test_report_path_or_how_to_get_it(tmp_path, monkeypatch):
    fold = write_fold(tmp_path / "HyperaTrainer_6epochs__P__3d_fullres" / "fold_0")
    path, line = write_run_report(fold)
    assert Path(path) == fold / "hypera" / "report.html" and Path(path).is_file()
    assert line == f"HTML report of the HyperaTrainer_6epochs run (open it in a browser): {path}"
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "plotly" else real(name, *a))
    path, line = write_run_report(fold)
    assert path is None and line == ("HTML report not written: plotly is not installed. Install it with pip install "
                                     f"'hypera-nnunet[report]', then run: hypera-nnunet report {fold}")
