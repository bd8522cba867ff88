"""The report's content, read back from the pages and figures built on hand-made real-format inputs."""

from __future__ import annotations

import argparse
import json
import math
import re

import pytest
from report_fixtures import (
    AGENTS,
    CAND,
    EPOCH_S,
    KNOBS,
    LR_MULT,
    OVERHEAD,
    REWARD_LR,
    RUN_DIFFS,
    RUNS,
    write_benchmark,
    write_fold,
)

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.report import report_kind, write_report
from hypera_nnunet.report.benchmark_report import build_page as benchmark_page
from hypera_nnunet.report.benchmark_report import power_rows, read_results, run_level_rows, smallest_detectable
from hypera_nnunet.report.run_report import build_page as run_page
from hypera_nnunet.report.run_report import knob_figure, overhead_figure, read_run, summary_rows

pytest.importorskip("plotly")
RUN_PANELS = ["loss", "dice", "knob:lr", "knob:ce_dice_balance", "knob:nesterov", "rewards", "trust", "overhead"]


@pytest.fixture
def fold(tmp_path):
    return write_fold(tmp_path / "fold_0")


@pytest.fixture
def bench(tmp_path):
    return write_benchmark(tmp_path / "bench")


def test_run_is_read_as_recorded(fold):
    run = read_run(fold)
    assert run.epochs == [0, 1, 2, 3, 4, 5] and run.skipped_lines == (7,)  # the torn last line, by number
    assert run.knobs == list(KNOBS) and run.agents == list(AGENTS)
    assert [run.is_switch(k) for k in KNOBS] == [False, False, True]
    assert run.rollbacks == [(4, "pseudo-Dice EMA dropped by 0.2")]
    assert run.phases == [("explore", 0, 2), ("exploit", 3, 5)]
    assert run.epoch_s == dict(enumerate(EPOCH_S))
    assert [text for _, text in run.events] == [
        "epoch 3: exploration phase explore -> exploit",
        "epoch 4: rolled back to the last good epoch (pseudo-Dice EMA dropped by 0.2)"]
    assert run.validation == {"1": 0.5, "2": 0.25}


def test_run_page_has_one_panel_per_knob_and_the_curves(fold):
    page = run_page(read_run(fold))
    text = page.render()
    panels = re.findall(r'<section class="panel" data-panel="([^"]+)">', text)
    assert panels == RUN_PANELS and page.n_figures == 8
    assert text.count("<title>HYPERA run: HyperaTrainer_6epochs, fold_0</title>") == 1
    # plotly inlined once, nothing fetched from the network
    assert len(re.findall(r"plotly\.js v\d", text)) == 1 and not re.search(r"<script[^>]+src=", text)
    rows = dict(summary_rows(read_run(fold)))
    total = sum(v for k, v in OVERHEAD.items() if k != "dataloader_rebuild")
    assert rows["agents' time"] == f"{6 * total:.3f} s = {100 * 6 * total / sum(EPOCH_S):.2f}% of 14.5 s of epochs"
    assert rows["rollbacks"] == "epoch 4 (pseudo-Dice EMA dropped by 0.2)"
    assert rows["exploration phases"] == "explore 0-2, exploit 3-5"
    assert rows["knobs"] == "lr, ce_dice_balance, nesterov (switch)"


def test_knob_panels_multiplier_reference_switch_steps_phases_rollbacks(fold):
    run = read_run(fold)
    lr = knob_figure(run, "lr")
    assert list(lr.data[0].y) == list(LR_MULT) and list(lr.data[0].x) == [0, 1, 2, 3, 4, 5]
    shapes = [s.to_plotly_json() for s in lr.layout.shapes]
    hlines = [s for s in shapes if s.get("y0") == 1 and s.get("y1") == 1 and s.get("xref") == "x domain"]
    assert len(hlines) == 1  # nnU-Net's value, multiplier 1
    rects = [(s["x0"], s["x1"], s["fillcolor"]) for s in shapes if s["type"] == "rect"]
    assert rects == [(-0.5, 2.5, "rgba(255,165,0,0.16)"), (2.5, 5.5, "rgba(70,130,180,0.16)")]
    vlines = [s["x0"] for s in shapes if s["type"] == "line" and s.get("x0") == s.get("x1") and s.get("yref")]
    assert 4 in vlines
    nes = knob_figure(run, "nesterov")
    assert nes.data[0].line.shape == "hv" and list(nes.data[0].y) == [1, 1, 0, 0, 1, 1]
    assert list(nes.layout.yaxis.ticktext) == ["off", "on"]
    assert nes.data[0].text[2] == "value off, multiplier 0.500"


def test_overhead_panel_stacks_parts_and_shows_the_share(fold):
    fig = overhead_figure(read_run(fold))
    bars = [t for t in fig.data if t.type == "bar"]
    assert [b.name for b in bars] == ["coordinator", "learning_rate", "loss", "optimization"]  # no nested parts
    assert list(bars[0].y) == pytest.approx([10.0] * 6)
    share = [t for t in fig.data if t.type == "scatter"][0]
    total = sum(v for k, v in OVERHEAD.items() if k != "dataloader_rebuild")
    assert list(share.y) == pytest.approx([100 * total / s for s in EPOCH_S])


def test_rewards_and_trust_panels(fold):
    page = run_page(read_run(fold))
    text = page.render()
    assert "Reward per agent" in text and "Trust per agent" in text
    from hypera_nnunet.report.run_report import _lines_figure, _num

    run = read_run(fold)
    fig = _lines_figure(run, "r", {a: [_num(r["rewards"][a]) for r in run.records] for a in run.agents}, 300)
    assert [t.name for t in fig.data] == list(AGENTS) and list(fig.data[0].y) == list(REWARD_LR)


def test_power_formula_against_table_quantiles():
    # t quantiles from a table: t(0.975, 4) = 2.776445, t(0.8, 4) = 0.940965; df 9: 2.262157, 0.883404;
    # df 14: 2.144787, 0.868055
    sd = 0.03
    for n, (a, b) in {5: (2.776445, 0.940965), 10: (2.262157, 0.883404), 15: (2.144787, 0.868055)}.items():
        assert smallest_detectable(sd, n) == pytest.approx((a + b) * sd / math.sqrt(n), rel=1e-5)
    assert math.isnan(smallest_detectable(0.03, 1))


def test_benchmark_tables_run_level_first_then_per_class_then_curves_and_power(bench):
    res = read_results(bench)
    (row,) = run_level_rows(res)
    assert row[:9] == [f"{CAND} minus nnUNetTrainer_6epochs", 3, 0.01, "[-0.0200, 0.0400]", "n/a", "n/a", "0.7500",
                       "2 / 1", "0.25"]
    assert row[9] == "seed0_fold0 +0.0100, seed0_fold1 -0.0200, seed1_fold0 +0.0400"
    (p,) = power_rows(res)
    assert p[1] == 3 and p[2] == pytest.approx(0.03)
    assert p[3:] == pytest.approx([smallest_detectable(0.03, n) for n in (5, 10, 15)])
    assert p[3] == pytest.approx((2.776445 + 0.940965) * 0.03 / math.sqrt(5), rel=1e-5)
    text = benchmark_page(res, bench).render()
    tables = re.findall(r'<table data-table="([^"]+)">', text)
    assert tables == ["run_level", "dice_per_class", "surface_per_class", f"case_level:{CAND}", "time", "power"]
    assert re.findall(r'data-panel="([^"]+)"', text) == [f"curves:{r}" for r in RUNS]
    assert "<title>Benchmark: Dataset904_Hippocampus 3d_fullres, protocol cpu-v2</title>" in text
    assert "delta = (t(1 - alpha/2, n - 1) + t(power, n - 1)) × sd / √n" in text
    assert sum(RUN_DIFFS) / 3 == pytest.approx(0.01)


def test_benchmark_tables_read_the_harness_statistics_when_results_have_them(bench):
    """results.json of the current harness carries sign-flip and t p-values and a noncentral-t power table."""
    res = read_results(bench)
    pr = res["paired"][CAND]
    pr["run_level_fg_dice"].update(sign_flip_p=0.25, t_p=0.61)
    pr["power"] = {"min_detectable_difference": {"5": 0.0612, "10": 0.0301, "15": 0.0231}}
    pr["refused"] = "seed1_fold0: baseline seeded 1, candidate unseeded"
    (row,) = run_level_rows(res)
    assert row[4:7] == ["0.2500", "0.6100", "0.7500"]
    (p,) = power_rows(res)
    assert p[3:] == [0.0612, 0.0301, 0.0231]
    assert "Not paired: " + f"{CAND} minus nnUNetTrainer_6epochs: seed1_fold0" in benchmark_page(res, bench).render()


def test_benchmark_curves_put_both_arms_on_one_axis(bench):
    from hypera_nnunet.report.benchmark_report import curves_figure

    fig = curves_figure(read_results(bench), "seed0_fold1")
    assert [t.name for t in fig.data] == ["nnUNetTrainer_6epochs EMA", "nnUNetTrainer_6epochs per epoch",
                                          f"{CAND} EMA", f"{CAND} per epoch"]
    assert list(fig.data[1].y) == [0.1, 0.4, 0.5] and {t.xaxis for t in fig.data} == {None}  # one axis


def test_dispatcher_kinds_files_and_defaults(fold, bench):
    assert report_kind(fold) == "run" and report_kind(fold / "hypera" / "decisions.jsonl") == "run"
    assert report_kind(bench) == "benchmark" and report_kind(bench / "results.json") == "benchmark"
    assert write_report(fold) == fold / "hypera" / "report.html"
    assert write_report(bench) == bench / "report.html" and (bench / "report.html").stat().st_size > 1_000_000


def test_unknown_folder_names_the_inputs(tmp_path, fold):
    with pytest.raises(HyperaError) as e:
        report_kind(tmp_path)
    msg = str(e.value)
    assert msg == (f"{tmp_path} is neither a fold's results folder (with hypera/decisions.jsonl), a benchmark "
                   "output folder (with results.json) nor a search study (with study.json); it has HYPERA folds, "
                   "report one of them: fold_0.")
    with pytest.raises(HyperaError, match="does not exist"):
        report_kind(tmp_path / "nope")


def test_a_bare_optuna_journal_is_named(tmp_path):
    study = tmp_path / "study"
    study.mkdir()
    (study / "journal.log").write_text(json.dumps({"op_code": 0, "worker_id": "w", "study_name": "s"}) + "\n")
    with pytest.raises(HyperaError) as e:
        report_kind(study)
    assert str(e.value) == (f"{study} holds an Optuna journal (journal.log) but no study.json: report a study "
                            "folder made by `hypera-nnunet search run`.")


def test_cli_writes_and_prints_the_path(fold, tmp_path, capsys):
    from hypera_nnunet.report.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    out = tmp_path / "r.html"
    args = parser.parse_args(["report", str(fold), "-o", str(out)])
    assert args.func(args) == 0
    assert capsys.readouterr().out == f"report: {out}\n" and out.read_text().startswith("<!DOCTYPE html>")


def test_missing_plotly_names_the_extra(fold, monkeypatch):
    import sys

    from hypera_nnunet.report.html import require_plotly

    monkeypatch.setitem(sys.modules, "plotly", None)
    with pytest.raises(HyperaError) as e:
        require_plotly()
    assert str(e.value) == "HTML reports need plotly, which is not installed: pip install 'hypera-nnunet[report]'"
