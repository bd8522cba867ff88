"""Faults in real nnU-Net trainings on the 12-case Hippocampus subset, at a tiny CPU budget (issue 12):
NaN in several consecutive epochs, and two trainings started on one fold."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time

import pytest
import torch

from hypera_nnunet.data import nnunet_exe, run_nnunet

pytestmark = pytest.mark.nnunet
PLANS = "hyperaCPUPlans"
NAN_TRAINER = "HyperaTrainer_NaNAt3to6_10epochs_5iters"
NAN_MODULE = f'''
from hypera_nnunet.nnunet.trainers import HyperaTrainer_10epochs_5iters


class {NAN_TRAINER}(HyperaTrainer_10epochs_5iters):
    """NaN in every training batch of epochs 3-6: loss, gradients, weights and momentum all turn NaN."""

    def train_step(self, batch):
        if 3 <= self.current_epoch <= 6:
            batch = {{**batch, "data": batch["data"] * float("nan")}}
        return super().train_step(batch)
'''


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_nan_in_four_consecutive_epochs_ends_finite_at_nnunets_settings(hippo, tmp_path):
    env, name, root = hippo
    ext = tmp_path / "ext"
    ext.mkdir()
    (ext / "hypera_nan_trainer.py").write_text(NAN_MODULE)
    env = {**env, "nnUNet_extTrainer": os.pathsep.join([env["nnUNet_extTrainer"], str(ext)])}
    run_nnunet(["nnUNetv2_train", "904", "3d_fullres", "0", "-tr", NAN_TRAINER, "-p", PLANS, "-device", "cpu"],
               env=env)
    fold = root / "res" / name / f"{NAN_TRAINER}__{PLANS}__3d_fullres" / "fold_0"
    lines = _lines(fold / "hypera" / "decisions.jsonl")
    assert [x["epoch"] for x in lines] == list(range(10))
    reasons = [x["rollback"] for x in lines]
    assert reasons[:3] == [None, None, None]
    assert all(r == "non-finite loss or gradient" for r in reasons[3:7])
    assert reasons[7:] == [None, None, None]  # nothing injected: training goes on from the restored state
    assert all(math.isfinite(x["state"]["train_loss"]) for x in lines[7:])
    # three consecutive rollbacks (epochs 3-5) switch the agents off: nnU-Net's own settings from epoch 5 on
    assert [x["applied"] for x in lines] == [True] * 5 + [False] * 5
    assert all(m == 1.0 for x in lines[6:] for m in x["multipliers"].values())
    ckpt = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert all(torch.isfinite(v).all() for v in ckpt["network_weights"].values())
    assert all(torch.isfinite(t).all() for s in ckpt["optimizer_state"]["state"].values() for t in s.values()
               if torch.is_tensor(t))
    log = "".join(p.read_text() for p in fold.glob("training_log_*.txt"))
    assert log.count("rolled back to the last good epoch (non-finite loss or gradient)") == 4
    assert log.count("agents switched off after 3 consecutive rollbacks") == 1
    assert "exploration phase explore -> exploit" in log


def test_a_second_training_on_the_same_fold_exits_naming_the_first(hippo):
    env, name, root = hippo
    trainer = "HyperaTrainer_10epochs_5iters"
    cmd = [nnunet_exe("nnUNetv2_train"), "904", "3d_fullres", "1", "-tr", trainer, "-p", PLANS, "-device", "cpu"]
    lock = root / "res" / name / f"{trainer}__{PLANS}__3d_fullres" / "fold_1" / "hypera" / ".lock"
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        deadline = time.time() + 300
        while not (lock.is_file() and lock.read_text().startswith(f"pid {first.pid} ")):
            assert first.poll() is None and time.time() < deadline, "the first training did not take the lock"
            time.sleep(0.5)
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith(f"hypera-nnunet: error: {lock.parent} is in use: this fold's HYPERA training is "
                               f"locked by pid {first.pid} ")
        assert first.poll() is None  # the first one is unharmed
        lines = _lines(lock.parent / "decisions.jsonl") if (lock.parent / "decisions.jsonl").exists() else []
        assert [x["epoch"] for x in lines] == list(range(len(lines)))  # one writer only
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
