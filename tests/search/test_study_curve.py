"""The study machinery on the cheap curve objective: pruning, status, export, failures, two workers, a killed
worker's trial resumed, and what happens without Optuna."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

from hypera_nnunet.cli import main  # noqa: E402
from hypera_nnunet.search.study import summary  # noqa: E402

SPACE = """objective: curve
fidelity: {min_epochs: 2, max_epochs: 18}
params:
  nnunet.initial_lr: {low: 0.001, high: 0.1, log: true}
  nnunet.momentum: {low: 0.8, high: 0.99}
  learning.gradient_steps: {choices: [2, 4, 8]}
"""


@pytest.fixture
def space(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text(SPACE)
    return p


def test_a_study_prunes_reports_and_exports(space, tmp_path, capsys):
    study = tmp_path / "st"
    assert main(["search", "run", str(space), "--study", str(study), "-n", "12", "--seed", "0"]) == 0
    s = summary(study)
    assert s["trials"] == 12 and s["states"].get("PRUNED", 0) >= 2 and s["states"].get("COMPLETE", 0) >= 2
    pruned = [r for r in s["rows"] if r["state"] == "PRUNED"]
    assert all(r["epochs"] < 18 for r in pruned)  # stopped early: the budget of a pruned trial is its epochs
    assert s["epochs_spent"] == sum(r["epochs"] for r in s["rows"]) < 12 * 18
    # same seed, same study: TPE's proposals are reproducible
    again = tmp_path / "st2"
    assert main(["search", "run", str(space), "--study", str(again), "-n", "12", "--seed", "0"]) == 0
    assert [r["params"] for r in summary(again)["rows"]] == [r["params"] for r in s["rows"]]
    capsys.readouterr()
    assert main(["search", "status", str(study)]) == 0
    out = capsys.readouterr().out
    assert "12 trial(s)" in out and "budget spent:" in out and "PRUNED" in out
    best = max((r for r in s["rows"] if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    exported = tmp_path / "best.json"
    assert main(["search", "export", str(study), "-o", str(exported)]) == 0
    cfg = json.loads(exported.read_text())
    assert cfg == {"nnunet": {"initial_lr": best["params"]["nnunet.initial_lr"],
                              "momentum": best["params"]["nnunet.momentum"]},
                   "learning": {"gradient_steps": best["params"]["learning.gradient_steps"]}}
    # the export is a HYPERA configuration file that the trainers take as it is
    from hypera_nnunet.config import run_config

    assert run_config("HyperaTrainer", exported).nnunet.initial_lr == best["params"]["nnunet.initial_lr"]
    # a further run adds trials to the same study; a different space is refused
    assert main(["search", "run", str(space), "--study", str(study), "-n", "14"]) == 0
    assert summary(study)["trials"] == 14
    other = tmp_path / "other.yaml"
    other.write_text(SPACE.replace("0.99", "0.95"))
    assert main(["search", "run", str(other), "--study", str(study), "-n", "15"]) == 2
    assert "searches another space" in capsys.readouterr().err


def test_a_failed_trial_is_recorded_with_its_log_and_the_study_goes_on(space, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERA_CURVE_FAIL", "8")  # trials that draw gradient_steps 8 fail
    study = tmp_path / "st"
    assert main(["search", "run", str(space), "--study", str(study), "-n", "8", "--seed", "3",
                 "--pruner", "none"]) == 0
    rows = summary(study)["rows"]
    failed = [r for r in rows if r["state"] == "FAIL"]
    assert failed and len(rows) == 8
    assert all(r["params"]["learning.gradient_steps"] == 8 for r in failed)
    for r in failed:
        assert r["log"].endswith(f"trials/{r['number']:04d}/train.log") and Path(r["log"]).is_file()
        assert "failed on purpose" in r["error"]
    assert any(r["state"] == "COMPLETE" for r in rows)


def _worker(study: Path, n: int, i: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hypera_nnunet.cli", "search", "worker", str(study), "-n", str(n),
                             "--worker", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_two_workers_share_one_journal(space, tmp_path):
    study = tmp_path / "st"
    assert main(["search", "run", str(space), "--study", str(study), "-n", "1", "--seed", "0"]) == 0
    env = {**os.environ, "HYPERA_CURVE_EPOCH_S": "0.02"}
    procs = [_worker(study, 9, i, env) for i in (1, 2)]
    try:
        outs = [p.communicate(timeout=240)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = summary(study)["rows"]
    assert len(rows) >= 9 and len({r["number"] for r in rows}) == len(rows)
    by_worker = {r["folder"]: r for r in rows}
    assert len(by_worker) == len(rows)  # every trial its own folder
    assert all("started" in o for o in outs)  # both workers ran trials


def test_a_killed_worker_s_trial_resumes_from_its_folder(space, tmp_path):
    study = tmp_path / "st"
    nopr = ["--pruner", "none", "--seed", "1"]
    env = {**os.environ, "HYPERA_CURVE_EPOCH_S": "0.3"}
    p = subprocess.Popen([sys.executable, "-m", "hypera_nnunet.cli", "search", "run", str(space), "--study",
                          str(study), "-n", "1", *nopr], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    state = study / "trials" / "0000" / "curve_state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (state.is_file() and json.loads(state.read_text())["epoch"] >= 4):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    stopped_at = json.loads(state.read_text())["epoch"]
    assert 4 <= stopped_at < 18
    assert [r["state"] for r in summary(study)["rows"]] == ["RUNNING"]
    assert main(["search", "run", str(space), "--study", str(study), "-n", "1"]) == 0
    rows = summary(study)["rows"]
    assert [(r["state"], r["stale"], r["resume_of"]) for r in rows] == [("FAIL", True, None),
                                                                        ("COMPLETE", False, "0000")]
    assert rows[1]["params"] == rows[0]["params"]  # the same configuration, continued in the same folder
    assert rows[1]["folder"] == "0000" and not (study / "trials" / "0001").exists()
    # counted once: the resumed trial is the study's one trial, and the budget counts the folder's 18 epochs once
    s = summary(study)
    assert s["epochs_spent"] == 18


def test_without_optuna_search_names_the_extra(space, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna -> ImportError
    assert main(["search", "run", str(space), "--study", str(tmp_path / "st")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'hypera-nnunet[search]'" in err and "Traceback" not in err


def test_status_of_a_folder_that_is_no_study(tmp_path, capsys):
    assert main(["search", "status", str(tmp_path)]) == 2
    assert "is not a search study" in capsys.readouterr().err


def test_an_epoch_budget_stops_the_study_where_it_is_spent(space, tmp_path, capsys):
    """``--budget-epochs 40``: no trial starts once 40 epochs are trained, and the trial that reaches 40 stops at
    that epoch, so the study spends exactly 40 epochs however many trials -n allows."""
    study = tmp_path / "bud"
    assert main(["search", "run", str(space), "--study", str(study), "-n", "50", "--seed", "0", "--pruner", "none",
                 "--budget-epochs", "40"]) == 0
    s = summary(study)
    assert s["epochs_spent"] == 40 and s["budget_epochs"] == 40
    # no pruner: every trial runs 18 epochs, so trials 0 and 1 finish and trial 2 is stopped at its epoch 4
    assert [(r["state"], r["epochs"]) for r in s["rows"]] == [("COMPLETE", 18), ("COMPLETE", 18), ("PRUNED", 4)]
    assert main(["search", "run", str(space), "--study", str(study), "-n", "50"]) == 0  # spent: nothing runs
    assert summary(study)["trials"] == 3
    capsys.readouterr()
    assert main(["search", "status", str(study)]) == 0
    assert "(budget 40 epochs)" in capsys.readouterr().out
