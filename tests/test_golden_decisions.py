"""Behaviour pinned across refactors: fixed-seed coordinator runs on synthetic signals give the same
``decisions.jsonl``, line for line, as the stored fingerprints in ``tests/data/golden_decisions.json``.

Each scenario drives the real coordinator (six agents, a real rollback guard on a tiny network) through
synthetic epochs whose pseudo-Dice responds to the applied learning-rate multiplier, with a collapse and
a NaN epoch to exercise the safeguards. A line's fingerprint is the SHA-256 of its canonical JSON without
``overhead_s`` (timings) and without the state fingerprints, which are pinned separately: a change to
what the agents *store* (not what they decide) changes ``state`` only. Regenerate only for an intended
change, and say which of the two changed: ``HYPERA_REGEN_GOLDEN=1 pytest tests/test_golden_decisions.py``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import pytest
import torch
from hypera_fakes import ALL_KNOBS, FakeKnobs, make_signals

from hypera_nnunet.config import config_from_dict
from hypera_nnunet.control.coordinator import Coordinator
from hypera_nnunet.control.decision_log import DecisionLog
from hypera_nnunet.control.safeguards import RollbackGuard

GOLDEN = Path(__file__).parent / "data" / "golden_decisions.json"
SIX = ["learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization"]
EPOCHS = 24
SCENARIOS = {
    "six_weighted": {"agents": {a: {} for a in SIX}, "seed": 5},
    "six_priority_iterations": {"agents": {**{a: {} for a in SIX}, "learning_rate": {"every_n_iterations": 2}},
                                "strategy": "priority", "seed": 1,
                                "safeguards": {"max_consecutive_rollbacks": 2}},
    "shadow": {"agents": {a: {} for a in SIX}, "shadow": True, "seed": 2},
}


def _dice_curve(epoch: int, lr_log_m: float) -> float:
    """Pseudo-Dice of a synthetic run: rises with the epoch, a little faster at a higher LR; collapses at 10-11."""
    if epoch in (10, 11):
        return 0.05
    return 0.2 + 0.6 * (1 - math.exp(-(epoch + 1) / 6)) + 0.02 * lr_log_m


def drive(config: dict, log_path: Path) -> list[str]:
    cfg = config_from_dict(config)
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    guard = RollbackGuard({"network": net, "optimizer": opt}, cfg.safeguards)
    knobs = FakeKnobs(ALL_KNOBS)
    coord = Coordinator(cfg, knobs, num_epochs=EPOCHS, log=DecisionLog(log_path), guard=guard)
    coord.on_train_start(0)
    x = torch.linspace(-1, 1, 8).reshape(2, 4)
    for e in range(EPOCHS):
        coord.on_epoch_start(make_signals(e, EPOCHS))
        for it in range(1, 5):
            opt.zero_grad()
            net(x).pow(2).sum().backward()
            opt.step()
            coord.on_iteration(it, make_signals(e, EPOCHS))
        s = make_signals(e, EPOCHS, dice=_dice_curve(e, knobs.current["lr"]))
        if e == 15:
            s.train_losses[-1] = float("nan")
        coord.on_epoch_end(s)
    return [line for line in log_path.read_text().splitlines()]


def line_fingerprint(line: str) -> str:
    rec = json.loads(line)
    for k in ("overhead_s", "fingerprint_start", "fingerprint_end"):
        rec.pop(k, None)
    return hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_decisions_match_the_stored_fingerprints(name, tmp_path):
    lines = drive(SCENARIOS[name], tmp_path / "decisions.jsonl")
    got = [line_fingerprint(s) for s in lines]
    if os.environ.get("HYPERA_REGEN_GOLDEN"):
        stored = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
        stored[name] = {"fingerprints": got, "first_line": json.loads(lines[0]),
                        "state": [json.loads(s)["fingerprint_end"] for s in lines],
                        "rollbacks": [json.loads(s)["rollback"] for s in lines]}
        GOLDEN.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
    expected = json.loads(GOLDEN.read_text())[name]
    assert len(got) == EPOCHS
    assert [json.loads(s)["rollback"] for s in lines] == expected["rollbacks"]
    first, exp_first = json.loads(lines[0]), dict(expected["first_line"])
    for k in ("overhead_s", "fingerprint_start", "fingerprint_end"):
        first.pop(k), exp_first.pop(k)
    assert first == exp_first
    assert got == expected["fingerprints"]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_agent_state_matches_the_stored_fingerprints(name, tmp_path):
    lines = drive(SCENARIOS[name], tmp_path / "decisions.jsonl")
    assert [json.loads(s)["fingerprint_end"] for s in lines] == json.loads(GOLDEN.read_text())[name]["state"]
