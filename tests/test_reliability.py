"""Faults the control layer must survive, each reproduced on tiny hand-made inputs (issue 12)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.common.locks import FolderLock
from hypera_nnunet.common.safe_load import load_torch_file
from hypera_nnunet.control.decision_log import DecisionLog
from hypera_nnunet.control.safeguards import RollbackGuard
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet.checkpoint import (
    agent_state_path,
    check_checkpoint,
    load_agent_state,
    prune_agent_state,
    save_agent_state,
)
from hypera_nnunet.settings import SafeguardConfig


# ---- 1. rollback after consecutive bad epochs (the snapshot must never alias the optimizer) ------
def _sgd():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    return net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)


def _step(net, opt, x):
    opt.zero_grad()
    net(x).sum().backward()
    opt.step()


def test_rollback_recovers_from_consecutive_nan_epochs():
    net, opt = _sgd()
    guard = RollbackGuard({"network": net, "optimizer": opt}, SafeguardConfig())
    good = torch.ones(2, 3)
    _step(net, opt, good)  # momentum buffers exist now
    guard.accept(0.5)
    saved_w = net.weight.detach().clone()
    saved_m = opt.state[net.weight]["momentum_buffer"].clone()
    for _ in range(4):  # four bad epochs in a row, each restored
        _step(net, opt, torch.full((2, 3), float("nan")))
        assert torch.isnan(net.weight).all()
        assert guard.restore()
        assert torch.equal(net.weight, saved_w)
        assert torch.equal(opt.state[net.weight]["momentum_buffer"], saved_m)
    _step(net, opt, good)  # and training goes on from the last good state
    expected = saved_w - 0.1 * (0.9 * saved_m + good.sum(0, keepdim=True))
    assert torch.allclose(net.weight, expected)


# ---- 3. a damaged decision log: keep the valid prefix, move the tail aside, say so --------------
def _write_log(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(x + b"\n" for x in lines))


def _rec(e: int) -> bytes:
    return json.dumps({"epoch": e, "x": e * 10}).encode()


@pytest.mark.parametrize("bad, reason", [
    (b"42", "a JSON int, not a record"),
    (b'{"epoch": "x"}', "epoch 'x' is not an integer"),
    (b"\xff\xfe{", "undecodable bytes"),
    (b'{"epoch": 2, "x"', "not JSON (torn line?)"),
    (_rec(1), "epoch 1 after epoch 1"),  # two writers: [0, 1, 1, ...]
])
def test_damaged_log_keeps_the_valid_prefix_and_moves_the_tail_aside(tmp_path, bad, reason):
    path = tmp_path / "decisions.jsonl"
    _write_log(path, [_rec(0), _rec(1), bad, _rec(3)])
    rec = DecisionLog(path).truncate_from(4)
    assert path.read_bytes() == _rec(0) + b"\n" + _rec(1) + b"\n"
    assert rec.kept == 2 and rec.reason == f"line 3: {reason}"
    assert rec.damaged.read_bytes() == bad + b"\n" + _rec(3) + b"\n"
    assert rec.damaged.name.startswith("decisions.damaged-") and rec.damaged.suffix == ".jsonl"
    assert rec.message(path) == (f"HYPERA: {path} is damaged (line 3: {reason}); kept its first 2 records "
                                 f"and moved the lines after them to {rec.damaged}")


def test_a_second_resume_after_a_repair_keeps_the_gap_and_every_record(tmp_path):
    """A repaired log (0, 1) continued from a checkpoint at epoch 4 reads 0, 1, 4, 5: all valid on the next resume,
    and a second repair in the same second gets a file of its own."""
    path = tmp_path / "decisions.jsonl"
    _write_log(path, [_rec(0), _rec(1), b"42", _rec(3)])
    first = DecisionLog(path).truncate_from(4)
    with open(path, "ab") as f:
        f.write(_rec(4) + b"\n" + _rec(5) + b"\n")
    again = DecisionLog(path).truncate_from(6)
    assert (again.kept, again.damaged) == (4, None)
    assert path.read_bytes() == b"".join(_rec(e) + b"\n" for e in (0, 1, 4, 5))
    with open(path, "ab") as f:
        f.write(b"{torn")
    third = DecisionLog(path).truncate_from(6)
    assert third.damaged != first.damaged and first.damaged.read_bytes() == b"42\n" + _rec(3) + b"\n"
    assert third.damaged.read_bytes() == b"{torn\n"


def test_intact_log_drops_only_superseded_epochs_silently(tmp_path):
    path = tmp_path / "decisions.jsonl"
    _write_log(path, [_rec(0), _rec(1), _rec(2)])
    rec = DecisionLog(path).truncate_from(1)
    assert path.read_bytes() == _rec(0) + b"\n"
    assert (rec.kept, rec.superseded, rec.damaged, rec.message(path)) == (1, 2, None, None)
    assert list(tmp_path.iterdir()) == [path]


# ---- 2. one training per fold: a folder lock that names its holder -------------------------------
def test_folder_lock_refuses_a_second_process_and_names_the_holder(tmp_path):
    lock = FolderLock(tmp_path / "hypera", "this fold's HYPERA training").acquire()
    code = ("import sys; from hypera_nnunet.common.locks import FolderLock; from hypera_nnunet.errors import "
            f"HyperaError\ntry: FolderLock({str(tmp_path / 'hypera')!r}).acquire()\n"
            "except HyperaError as e: print(e); sys.exit(3)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 3 and f"pid {os.getpid()} " in r.stdout and "is in use" in r.stdout
    lock.release()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0


def test_lock_is_released_when_its_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from hypera_nnunet.common.locks import "
                               f"FolderLock; FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); "
                               "time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(HyperaError, match=f"pid {holder.pid} "):
        FolderLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    FolderLock(tmp_path).acquire().release()  # kill -9 leaves no stale lock


def test_a_forked_worker_that_outlives_its_killed_holder_does_not_keep_the_lock(tmp_path):
    """nnU-Net's augmentation workers are forked after the fold is locked and loop on after a kill -9."""
    code = ("import os, sys, time; from hypera_nnunet.common.locks import FolderLock; "
            f"FolderLock({str(tmp_path)!r}).acquire(); pid = os.fork()\n"
            "if pid == 0: time.sleep(60); os._exit(0)\n"
            "print(pid, flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    worker = int(holder.stdout.readline())
    try:
        with pytest.raises(HyperaError, match=f"pid {holder.pid} "):
            FolderLock(tmp_path).acquire()
        holder.kill()
        holder.wait()
        assert Path(f"/proc/{worker}").exists()  # the orphaned worker lives on ...
        FolderLock(tmp_path).acquire().release()  # ... and holds no lock
    finally:
        os.kill(worker, 9)


# ---- atomic writes: a full disk is one line naming the file, and the old file survives ----------
def test_full_disk_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_json(target, {"a": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(HyperaError, match=f"could not write {target}: No space left on device"):
        atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 1} and sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


# ---- 5. a damaged checkpoint is named, with the others that exist; nothing falls back ----------
def test_damaged_checkpoint_is_named_with_its_alternatives(tmp_path):
    good = tmp_path / "checkpoint_best.pth"
    torch.save({"w": torch.ones(3)}, good)
    data = good.read_bytes()
    latest = tmp_path / "checkpoint_latest.pth"
    latest.write_bytes(data[: len(data) // 2])
    check_checkpoint(good)
    with pytest.raises(HyperaError) as e:
        check_checkpoint(latest)
    assert str(e.value).startswith(f"checkpoint {latest} is damaged (")
    assert str(e.value).endswith(f"checkpoint_best.pth exists in {tmp_path}: to resume from one, copy it to "
                                 "checkpoint_latest.pth yourself (nothing falls back silently)")
    flipped = bytearray(data)  # one flipped bit inside the tensor's bytes fails its member's CRC
    flipped[data.index(b"\x00\x00\x80\x3f") + 3] ^= 0x01
    latest.write_bytes(bytes(flipped))
    with pytest.raises(HyperaError, match=r"is damaged \(member checkpoint_best/data/0 fails its CRC check\)"):
        check_checkpoint(latest)


def test_agent_state_beside_its_checkpoint_survives_a_kill_between_the_writes(tmp_path):
    ck = tmp_path / "checkpoint_latest.pth"
    save_agent_state({"epoch": 50}, ck, 50)
    prune_agent_state(ck, 50)
    save_agent_state({"epoch": 100}, ck, 100)  # killed here: the checkpoint on disk still holds epoch 50
    assert load_agent_state(ck, 50) == {"epoch": 50}
    prune_agent_state(ck, 100)  # after the checkpoint of epoch 100 is in place
    assert not agent_state_path(ck, 50).exists() and load_agent_state(ck, 100) == {"epoch": 100}


# ---- 8. files that cross between users run no code -----------------------------------------------
class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_in_a_policies_file_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    p = tmp_path / "policies.pt"
    torch.save({"agents": {"learning_rate": _Evil(str(marker))}}, p)
    with pytest.raises(HyperaError) as e:
        load_torch_file(p, "HYPERA policies")
    assert str(e.value).startswith(f"HYPERA policies {p} holds objects that would run code when loaded; refused")
    assert not marker.exists()


def test_policies_and_agent_state_load_safely(tmp_path):
    """What the project itself writes (tensors, numpy buffers and generator states) loads with weights_only."""
    from hypera_fakes import FakeKnobs, make_signals

    from hypera_nnunet.config import config_from_dict
    from hypera_nnunet.control.coordinator import Coordinator

    c = Coordinator(config_from_dict({"agents": {"learning_rate": {}, "loss": {}}}), FakeKnobs(), num_epochs=10)
    for e in range(6):
        c.on_epoch_start(make_signals(e, 10))
        c.on_epoch_end(make_signals(e, 10))
    torch.save(c.state_dict(), tmp_path / "state.pt")
    torch.save(c.policies(), tmp_path / "policies.pt")
    other = Coordinator(config_from_dict({"agents": {"learning_rate": {}, "loss": {}}}), FakeKnobs(), num_epochs=10)
    other.load_state_dict(load_torch_file(tmp_path / "state.pt"))
    from hypera_nnunet.control.decision_log import fingerprint

    assert fingerprint(other.state_dict()) == fingerprint(c.state_dict())
    assert other.load_policies(load_torch_file(tmp_path / "policies.pt"), "p") == ["learning_rate", "loss"]


def test_policies_with_another_observation_size_are_refused_naming_both(tmp_path):
    from hypera_fakes import FakeKnobs

    from hypera_nnunet.config import config_from_dict
    from hypera_nnunet.control.coordinator import Coordinator

    cfg = config_from_dict({"agents": {"learning_rate": {}}})
    saved = Coordinator(cfg, FakeKnobs(("lr", "momentum")), num_epochs=10).policies()
    here = Coordinator(cfg, FakeKnobs(("lr",)), num_epochs=10)
    with pytest.raises(ValueError, match=r"old\.pt: agent 'learning_rate' was saved with observation size 15, "
                                         r"this run has 14"):
        here.load_policies(saved, "old.pt")


def test_an_agent_naming_an_unknown_knob_is_an_error_at_start(monkeypatch):
    from hypera_fakes import FakeKnobs

    from hypera_nnunet.agents import AGENTS
    from hypera_nnunet.config import config_from_dict
    from hypera_nnunet.control.coordinator import Coordinator
    from hypera_nnunet.errors import ConfigError

    monkeypatch.setattr(AGENTS["optimization"], "knobs", ("momentum", "nesterof"))
    with pytest.raises(ConfigError, match=r"agent 'optimization' names unknown knob\(s\) \['nesterof'\]"):
        Coordinator(config_from_dict({"agents": {"optimization": {}}}), FakeKnobs(), num_epochs=10)
