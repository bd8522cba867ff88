"""Under DDP the agents decide on rank 0 and every rank applies rank 0's values (gloo, 2 CPU processes).

The two ranks see different local signals (epoch times and pseudo-Dice differ), as real ranks do; left
alone their agents would choose different hyperparameters for one model. Only rank 0 writes the log.
"""

from __future__ import annotations

import json

import torch.distributed as dist
import torch.multiprocessing as mp

EPOCHS = 8


def _worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        from hypera_fakes import FakeKnobs, make_signals

        from hypera_nnunet.config import config_from_dict
        from hypera_nnunet.control.coordinator import Coordinator
        from hypera_nnunet.control.decision_log import DecisionLog
        from hypera_nnunet.nnunet.ddp import broadcast_from_rank0

        six = ["learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization"]
        knobs = FakeKnobs()
        log = DecisionLog(f"{out_dir}/rank{rank}/decisions.jsonl") if rank == 0 else None
        coord = Coordinator(config_from_dict({"agents": six, "seed": 3}), knobs, EPOCHS, log=log,
                            broadcast=broadcast_from_rank0)
        coord.on_train_start(0)
        for e in range(EPOCHS):
            s = make_signals(e, EPOCHS, dice=0.3 + 0.05 * e + 0.1 * rank)  # rank-local signals
            s.epoch_times = [10.0 + 7 * rank + e] * len(s.epoch_times)
            coord.on_epoch_start(s)
            coord.on_epoch_end(s)
        with open(f"{out_dir}/applied{rank}.json", "w") as f:
            json.dump({"applied": knobs.applied, "actions": coord.record["actions"]}, f)
    finally:
        dist.destroy_process_group()


def test_every_rank_applies_rank_zeros_values_and_only_rank_zero_writes(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    a0 = json.loads((tmp_path / "applied0.json").read_text())
    a1 = json.loads((tmp_path / "applied1.json").read_text())
    assert a0["applied"] == a1["applied"]  # identical multipliers on both ranks, every knob, every call
    assert any(v != 0.0 for vals in a0["applied"].values() for v in vals)  # and the agents did act
    assert a0["actions"] != a1["actions"]  # although the ranks' own agents wanted different things
    assert (tmp_path / "rank0" / "decisions.jsonl").is_file() and not (tmp_path / "rank1").exists()
    assert len((tmp_path / "rank0" / "decisions.jsonl").read_text().splitlines()) == EPOCHS
