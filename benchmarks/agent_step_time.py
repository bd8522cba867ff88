"""Time of the agents' work per epoch outside nnU-Net: one SAC update, and one coordinator epoch.

No nnU-Net, no data: the six HyperaTrainer agents under one coordinator, driven by synthetic signals
(``tests/hypera_fakes.py``), one thread as in training (``coordinator.single_thread``):

    python benchmarks/agent_step_time.py --out docs/bench/agent_step_time.json

* ``sac_update_ms``: one ``SAC.update`` (batch 32, 64x64 networks, 22 observations, 2 actions), with the
  optimizer the package uses (fused Adam where torch has it) and with torch's for-loop Adam, which the
  first benchmark runs used (they also computed the critics' unused gradients in the actor step, which
  this does not reproduce, so ``for_loop_adam`` is a lower bound of the old cost);
* ``six_agents_update_ms``: one SAC update of each of HYPERA's six agents' learners (three with one
  action, three with two, prioritized replay, batch 32), one after another (``alone``) and as one
  batched step (``together``, ``rl.batched.update_together``, which the coordinator uses);
* ``optimizer_share_for_loop_adam``: the share of an update's CPU time inside ``Optimizer.step`` with
  the for-loop Adam (torch profiler, 100 updates);
* ``coordinator_epoch_ms``: ``on_epoch_start`` + ``on_epoch_end`` of a 50-epoch run, after learning has
  started, by part (``overhead_s``), for ``learning.gradient_steps`` 8 and 4, and the time of one state
  fingerprint (``one_fingerprint``);
* ``panel_s``: drawing the multipliers panel (9 knobs, 50 epochs) and stacking it below a
  ``progress.png`` that nnU-Net's own logger drew from 50 epochs of synthetic logs (once per run).

Trainer-side per-epoch costs (gradient norms on every optimizer step, the state signals) need a real
network and are measured in the benchmark runs themselves (``trainer_*`` in ``overhead_s``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hypera_nnunet.common.atomic_io import atomic_write_json
from hypera_nnunet.config import HyperaConfig, LearningConfig
from hypera_nnunet.control.coordinator import Coordinator
from hypera_nnunet.control.decision_log import fingerprint
from hypera_nnunet.rl.buffers import ReplayBuffer
from hypera_nnunet.rl.sac import SAC, SACConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hypera_fakes import FakeKnobs, make_signals  # noqa: E402

SIX = ("learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization")
OBS, ACT, BATCH = 22, 2, 32
WARMUP, REPEATS = 20, 400
EPOCHS, SKIP = 50, 10  # coordinator run length, and the first epochs left out (learning starts at 4)


def _sac_and_buffer(fused: bool, seed: int) -> tuple[SAC, ReplayBuffer]:
    sac = SAC(OBS, ACT, [-0.5] * ACT, [0.5] * ACT, SACConfig(), seed=seed)
    if not fused:  # the for-loop Adam of the first runs
        sac.actor_opt = torch.optim.Adam(sac.actor.parameters(), lr=3e-4)
        sac.critic_opt = torch.optim.Adam(sac.critic.parameters(), lr=3e-4)
        sac.alpha_opt = torch.optim.Adam([sac.log_alpha], lr=3e-4)
    buf = ReplayBuffer(200, OBS, ACT, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(50):
        buf.add(rng.normal(size=OBS), rng.uniform(-0.5, 0.5, ACT), rng.normal(), rng.normal(size=OBS), False)
    for _ in range(WARMUP):
        sac.update(buf.sample(BATCH))
    return sac, buf


def sac_update_ms(fused: bool, seed: int = 0) -> float:
    sac, buf = _sac_and_buffer(fused, seed)
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        sac.update(buf.sample(BATCH))
    return 1000 * (time.perf_counter() - t0) / REPEATS


def six_agents_update_ms(together: bool, seed: int = 0) -> float:
    from hypera_nnunet.rl.batched import update_together
    from hypera_nnunet.rl.buffers import PrioritizedReplayBuffer

    pairs = []
    for i, act in enumerate((1, 1, 1, 2, 2, 2)):  # lr, loss, batch size; augmentation, regularization, optimizer
        sac = SAC(OBS, act, [-0.5] * act, [0.5] * act, SACConfig(), seed=seed + i)
        buf = PrioritizedReplayBuffer(200, OBS, act, seed=seed + i)
        rng = np.random.default_rng(seed + i)
        for _ in range(50):
            buf.add(rng.normal(size=OBS), rng.uniform(-0.5, 0.5, act), rng.normal(), rng.normal(size=OBS), False)
        pairs.append((sac, buf))

    def step() -> None:
        batches = [buf.sample(BATCH) for _, buf in pairs]
        sacs = [sac for sac, _ in pairs]
        outs = update_together(sacs, batches) if together else [s.update(b) for s, b in zip(sacs, batches)]
        for (_, buf), b, o in zip(pairs, batches, outs):
            buf.update_priorities(b.indices, o["td_errors"])

    for _ in range(WARMUP):
        step()
    t0 = time.perf_counter()
    for _ in range(REPEATS):
        step()
    return 1000 * (time.perf_counter() - t0) / REPEATS


def optimizer_share(fused: bool, seed: int = 0) -> float:
    from torch.profiler import profile

    sac, buf = _sac_and_buffer(fused, seed)
    with profile() as prof:
        for _ in range(100):
            sac.update(buf.sample(BATCH))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    step = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#"))
    return step / total


def panel_s(epochs: int = 50) -> dict:
    from hypera_nnunet.nnunet.progress_panel import LOG_PREFIX, HyperaLocalLogger, stack_png

    rng = np.random.default_rng(0)
    lg = HyperaLocalLogger()
    knobs = ("lr", "ce_dice_balance", "ds_decay", "batch_size", "aug_prob", "aug_strength", "weight_decay",
             "momentum", "nesterov")
    for knob in knobs:  # nnU-Net's logger only takes registered keys, as in HyperaTrainer.on_train_start
        lg.my_fantastic_logging[LOG_PREFIX + knob] = []
    for e in range(epochs):
        for k, v in (("mean_fg_dice", 0.8 * e / epochs), ("ema_fg_dice", 0.8 * e / epochs),
                     ("dice_per_class_or_region", [0.8 * e / epochs] * 2), ("train_losses", -e / epochs),
                     ("val_losses", -e / epochs), ("lrs", 0.01 * (1 - e / epochs) ** 0.9),
                     ("epoch_start_timestamps", 5.0 * e), ("epoch_end_timestamps", 5.0 * e + 4.7)):
            lg.log(k, v, e)
        for knob in knobs:
            lg.log(LOG_PREFIX + knob, float(np.exp(rng.normal(0, 0.1))), e)
    with tempfile.TemporaryDirectory() as d:
        # nnU-Net's own progress.png first (not timed): in training it is drawn every epoch, so matplotlib is warm
        super(HyperaLocalLogger, lg).plot_progress_png(d)
        t0 = time.perf_counter()
        lg.plot_panel(d)
        draw = time.perf_counter() - t0
        t0 = time.perf_counter()
        stack_png(str(Path(d) / "progress.png"), str(Path(d) / "progress_hypera.png"))
        stack = time.perf_counter() - t0
    return {"draw": round(draw, 4), "stack": round(stack, 4)}


def coordinator_epoch_ms(gradient_steps: int, seed: int = 0) -> dict:
    cfg = HyperaConfig(agents={a: {} for a in SIX}, seed=seed,
                       learning=LearningConfig(gradient_steps=gradient_steps))
    c = Coordinator(cfg, FakeKnobs(), num_epochs=EPOCHS)
    c.on_train_start(0)
    parts: dict[str, list[float]] = {}
    for e in range(EPOCHS):
        s = make_signals(e, EPOCHS, dice=0.5 + 0.005 * e)
        c.on_epoch_start(s)
        c.on_epoch_end(s)
        if e >= SKIP:
            for k, v in c.record["overhead_s"].items():
                parts.setdefault(k, []).append(1000 * v)
    out = {k: round(statistics.mean(v), 3) for k, v in parts.items()}
    t0 = time.perf_counter()
    for _ in range(REPEATS // 10):  # one hash of the whole agent state, as each fingerprint in a decision line
        fingerprint(c.state_dict(copy_tensors=False))
    out["one_fingerprint"] = round(1000 * (time.perf_counter() - t0) / (REPEATS // 10), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = {
        "command": "python benchmarks/agent_step_time.py --out " + str(args.out),
        "machine": {"cpu_count": __import__("os").cpu_count(), "torch": torch.__version__,
                    "python": platform.python_version()},
        "sac_update_ms": {"fused_adam": round(sac_update_ms(True), 4), "for_loop_adam": round(sac_update_ms(False), 4)},
        "six_agents_update_ms": {"alone": round(six_agents_update_ms(False), 4),
                                 "together": round(six_agents_update_ms(True), 4)},
        "optimizer_share_for_loop_adam": round(optimizer_share(False), 4),
        "optimizer_share_fused_adam": round(optimizer_share(True), 4),
        "panel_s": panel_s(),
        "coordinator_epoch_ms": {f"gradient_steps_{g}": coordinator_epoch_ms(g) for g in (8, 4)},
    }
    atomic_write_json(args.out, res)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
