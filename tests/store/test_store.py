"""The experience store: exact round trips, two writers at once, a killed writer, damaged files, the baselines'
keys and the reference curve, and a resumed run's recorder."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.store import ExperienceStore, RunRecorder, baseline_key

IDENTITY = {"dataset": "Dataset004_Hippocampus", "fingerprint": "f" * 16, "plans": "hyperaCPU2dB16Plans",
            "plans_hash": "p" * 16, "configuration": "2d", "fold": 0, "seed": 0, "num_epochs": 3, "iterations": 25}


def _row(e: int, d: int = 3):
    obs = np.arange(d, dtype=np.float32) + e
    return obs, np.array([0.1 * e], np.float32), float(e) - 0.5, obs + 1, e == 2


def _record(store: ExperienceStore, run_id: str, epochs: int, agents=("learning_rate", "loss"), delay=0.0):
    rec = RunRecorder(store, run_id, {"identity": IDENTITY, "trainer": "T"})
    for e in range(epochs):
        for a in agents:
            rec.add(a, *_row(e), epoch=e)
        rec.epoch_done(e, 0.1 * (e + 1))
        time.sleep(delay)
    return rec


def test_a_run_round_trips_exactly(tmp_path):
    store = ExperienceStore(tmp_path / "s")
    _record(store, "r1", 3)
    run = store.read_run("r1")
    t = run.transitions["loss"]
    assert t.obs.tolist() == [[0, 1, 2], [1, 2, 3], [2, 3, 4]] and t.next_obs[0].tolist() == [1, 2, 3]
    assert t.reward.tolist() == [-0.5, 0.5, 1.5] and t.done.tolist() == [0, 0, 1] and t.epoch.tolist() == [0, 1, 2]
    assert np.allclose(t.action[:, 0], [0.0, 0.1, 0.2])
    assert run.meta["epochs_done"] == 3 and run.meta["ema_fg_dice"] == pytest.approx([0.1, 0.2, 0.3])
    assert run.meta["identity"] == IDENTITY and run.outcome is None
    assert json.loads((tmp_path / "s" / "store.json").read_text()) == {"format": "hypera-store", "version": 1}


def test_a_resumed_run_drops_what_came_after_its_checkpoint(tmp_path):
    store = ExperienceStore(tmp_path / "s")
    _record(store, "r1", 3)  # epochs 0-2 written; the checkpoint holds 2 epochs
    rec = RunRecorder.resume(store, "r1", {"identity": IDENTITY, "trainer": "T"}, from_epoch=2)
    rec.add("loss", *_row(2), epoch=2)
    rec.epoch_done(2, 0.9)
    run = store.read_run("r1")
    assert run.transitions["loss"].epoch.tolist() == [0, 1, 2]
    assert run.transitions["learning_rate"].epoch.tolist() == [0, 1]  # its epoch 2 was after the checkpoint
    assert run.meta["ema_fg_dice"] == pytest.approx([0.1, 0.2, 0.9]) and run.meta["resumed_at"] == [2]
    rec.finish({"foreground_mean": 0.8, "dice_per_class": {"1": 0.81, "2": 0.79}})
    assert store.read_run("r1").outcome["foreground_mean"] == 0.8


def _writer(root: str, run_id: str, epochs: int) -> None:
    store = ExperienceStore(root)
    _record(store, run_id, epochs)
    store.write_baseline(IDENTITY, [0.1, 0.2, 0.3], {"foreground_mean": 0.5}, run_id)


def test_two_writers_at_once_both_land(tmp_path):
    root = tmp_path / "s"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(root), f"run{i}", 40)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = ExperienceStore(root)
    assert store.run_ids() == ["run0", "run1"]
    for r in store.runs():
        assert [len(t) for t in r.transitions.values()] == [40, 40] and r.meta["epochs_done"] == 40
    assert len(store.baselines()) == 1 and store.baseline(IDENTITY)["ema_fg_dice"] == [0.1, 0.2, 0.3]
    assert not [p for p in root.rglob(".*.tmp")]  # no temporary file left


KILLED = """
import sys, time
sys.path.insert(0, {tests!r})
from test_store import _record
from hypera_nnunet.store import ExperienceStore
_record(ExperienceStore({root!r}), "killed", 10_000, delay=0.002)
"""


def test_a_killed_writer_leaves_whole_epochs(tmp_path):
    root = tmp_path / "s"
    code = KILLED.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.time() + 60
    while time.time() < deadline and not (root / "runs" / "killed" / "run.json").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    run = ExperienceStore(root).read_run("killed")
    n = run.meta["epochs_done"]
    assert n >= 1
    # the two files are renamed one after the other: the transitions hold the epochs of run.json or one more
    for t in run.transitions.values():
        assert t.epoch.tolist() in (list(range(n)), list(range(n + 1)))


def test_damaged_files_name_themselves(tmp_path):
    store = ExperienceStore(tmp_path / "s")
    _record(store, "r1", 2)
    npz = tmp_path / "s" / "runs" / "r1" / "transitions.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(HyperaError, match=r"transitions.npz: damaged transitions file"):
        store.read_run("r1")
    (tmp_path / "s" / "runs" / "r1" / "run.json").write_text("{not json")
    with pytest.raises(HyperaError, match=r"r1/run.json: not a readable JSON file"):
        store.read_run("r1")


def test_a_folder_that_is_not_a_store_is_refused(tmp_path):
    (tmp_path / "other.txt").write_text("x")
    with pytest.raises(HyperaError, match=r"not empty and has no store.json"):
        _record(ExperienceStore(tmp_path), "r1", 1)


def test_baseline_keys_and_the_reference_curve(tmp_path):
    store = ExperienceStore(tmp_path / "s")
    assert baseline_key(IDENTITY) != baseline_key({**IDENTITY, "seed": 1}) != baseline_key({**IDENTITY, "fold": 1})
    assert baseline_key(IDENTITY) == baseline_key({**IDENTITY, "trainer": "anything"})  # not part of the key
    store.write_baseline({**IDENTITY, "seed": 1}, [0.0, 0.2, 0.4], None, "a")
    store.write_baseline({**IDENTITY, "fold": 2}, [0.2, 0.4, 0.6], None, "b")
    store.write_baseline({**IDENTITY, "plans": "other"}, [0.9, 0.9, 0.9], None, "c")  # another plan: not used
    assert store.baseline(IDENTITY) is None
    curve, n = store.reference_curve(IDENTITY)
    assert n == 2 and curve == pytest.approx([0.1, 0.3, 0.5])
