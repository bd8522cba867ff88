"""One SAC update of HYPERA's six agents, three ways: plain ``SAC.update`` calls, ``rl.batched.update_together``,
and a ``torch.func`` prototype (``stack_module_state`` + ``vmap(functional_call)``). Decides issue 11's bullet on
``rl/batched.py`` with numbers:

    flock /tmp/cpu.lock .venv/bin/python benchmarks/sac_update_variants.py --out docs/bench/sac_update_variants.json

The six learners are built as ``agents.base.HyperparameterAgent`` builds them from the default ``LearningConfig``
(observations 22 = 13 base features + 9 knobs; action sizes 1, 1, 1, 2, 1, 2 for learning_rate, loss, batch_size,
augmentation, regularization, optimization; hidden (64, 64); batch 32; prioritized replay, 50 random transitions
from a fixed seed). One thread, as the coordinator runs the agents. Each variant has its own identical copy of
the six learners; after warm-up the variants are timed interleaved (one update of each per round), so load from
other processes falls on all of them alike. Timed: the update call only (sampling and the priority update are the
same code for every variant and are timed once, separately).

The ``torch.func`` prototype (between the ``core`` markers) owns its weights and Adam moments as stacked tensors
(a drop-in replacement would have to make those the truth behind each ``SAC``; not done here). Two layouts:

* ``padded``: all six learners in one ``vmap``, one-dimensional actions padded to two as ``batched.py`` does
  (zero head rows, zero critic input columns, zero bounds, log-probability masked);
* ``grouped``: one ``vmap`` per action size (4 learners with one action, 2 with two), no padding.

Gradients either by autograd on the stacked tensors (``autograd``) or by ``vmap(torch.func.grad_and_value)``
(``func_grad``). Per update, as ``SAC.update``: target action and target critics (no grad), critic loss,
backward, fused Adam step; actor loss scored by the stepped critics, backward for the actor only; temperature
loss (its gradient from the same backward as the actor's, they share no tensor), one fused Adam step for actors
and temperatures; Polyak update of the target critics.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from hypera_nnunet.common.atomic_io import atomic_write_json, dumps
from hypera_nnunet.rl import SAC, PrioritizedReplayBuffer, SACConfig
from hypera_nnunet.rl.batched import update_together
from hypera_nnunet.rl.buffers import ReplayBatch
from hypera_nnunet.rl.policies import SquashedGaussianActor, TwinQCritic
from hypera_nnunet.settings import LearningConfig

AGENTS = (("learning_rate", 1), ("loss", 1), ("batch_size", 1), ("augmentation", 2), ("regularization", 1),
          ("optimization", 2))
OBS = 22  # 13 base features + 9 knobs
EPOCH_S, GRADIENT_STEPS = 4.9, 8  # a 25-iteration CPU epoch of the benchmark protocol (docs/overhead.md)
FILL = 50
ROOT = Path(__file__).resolve().parents[1]


# ---- torch.func prototype: core begin ---------------------------------------------------------------------------
class _NoiseActor(SquashedGaussianActor):
    """``SquashedGaussianActor`` with the noise as an input (vmap cannot draw from each learner's generator) and a
    mask of the real action dimensions (zero on padding)."""

    def forward(self, obs, eps, mask):
        mu, log_std = self._dist_params(obs)
        std = log_std.exp()
        u = mu + std * eps
        y = torch.tanh(u)
        action = torch.clamp(self.bias + self.scale * y, self.low, self.high)
        logp = ((-0.5 * ((u - mu) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)) * mask).sum(-1, keepdim=True)
        return action, logp - (torch.log(1 - y.pow(2) + 1e-6) * mask).sum(-1, keepdim=True)


def _padded(sac: SAC, act: int) -> tuple[_NoiseActor, TwinQCritic, TwinQCritic]:
    """Copies of ``sac``'s actor, critic and target critic widened to ``act`` actions with zeros."""
    pad, h = act - sac.act_dim, sac.config.hidden
    with torch.random.fork_rng(devices=[]):
        actor, critic, target = _NoiseActor(sac.obs_dim, act, h, [-1.0] * act, [1.0] * act), *(
            TwinQCritic(sac.obs_dim, act, h) for _ in range(2))
    with torch.no_grad():
        for (name, p), q in zip(actor.named_parameters(), sac.actor.parameters()):
            head = name.startswith(("mu.", "log_std."))  # one row per action
            p.copy_(F.pad(q, (0, pad) if q.dim() == 1 else (0, 0, 0, pad)) if head else q)
        for k in ("scale", "bias", "low", "high"):
            getattr(actor, k).copy_(F.pad(getattr(sac.actor, k), (0, pad)))
        for mine, theirs in ((critic, sac.critic), (target, sac.critic_target)):
            for (name, p), q in zip(mine.named_parameters(), theirs.parameters()):
                p.copy_(F.pad(q, (0, pad)) if name in ("q1.0.weight", "q2.0.weight") else q)  # actions: last columns
    return actor, critic, target


class FuncGroup:
    """Learners of one observation size and width, stacked once; ``step(batches)`` is their k-th updates."""

    def __init__(self, sacs: Sequence[SAC], func_grad: bool) -> None:
        self.sacs, self.func_grad, cfg = list(sacs), func_grad, sacs[0].config
        self.act, self.gamma, self.tau = max(s.act_dim for s in sacs), cfg.gamma, cfg.tau
        actors, critics, targets = zip(*(_padded(s, self.act) for s in sacs))
        self.ap, self.ab = stack_module_state(actors)
        self.cp, _ = stack_module_state(critics)
        self.tp = {k: v.detach() for k, v in stack_module_state(targets)[0].items()}
        self.log_alpha = torch.stack([s.log_alpha.detach().clone() for s in sacs]).requires_grad_()
        self.target_entropy = torch.tensor([s.target_entropy for s in sacs])
        self.mask = torch.tensor([[1.0] * s.act_dim + [0.0] * (self.act - s.act_dim) for s in sacs]).unsqueeze(1)
        self.actor, self.critic = (copy.deepcopy(m[0]).to("meta") for m in (actors, critics))
        adam = dict(lr=cfg.critic_lr, fused=True)
        self.critic_opt = torch.optim.Adam(self.cp.values(), **adam)
        self.actor_opt = torch.optim.Adam([*self.ap.values(), self.log_alpha], **adam)

    def _critic_loss(self, cp, obs, actions, target, w):
        q1, q2 = functional_call(self.critic, cp, (obs, actions))
        td1, td2 = q1 - target, q2 - target
        return 0.5 * (w * (td1.pow(2) + td2.pow(2))).mean(), (td1, td2)

    def _actor_loss(self, ap, la, ab, cp, obs, eps, mask, te):
        a, logp = functional_call(self.actor, (ap, ab), (obs, eps, mask))
        q1, q2 = functional_call(self.critic, cp, (obs, a))
        actor_loss = (la.detach().exp() * logp - torch.min(q1, q2)).mean()
        alpha_loss = -(la * (logp.detach() + te)).mean()
        return actor_loss + alpha_loss, (actor_loss, alpha_loss, logp)

    def _grads(self, fn, params: list, n: int, *args):
        """Gradients for the first ``n`` arguments (dicts or tensors) of ``fn``, its per-learner value and aux."""
        if self.func_grad:
            g, (value, aux) = vmap(grad_and_value(fn, argnums=tuple(range(n)), has_aux=True))(
                *(_detach(a) for a in args[:n]), *args[n:])
            return [t for x in g for t in (x.values() if isinstance(x, dict) else [x])], value, aux
        value, aux = vmap(fn)(*args)
        return torch.autograd.grad(value.sum(), params), value.detach(), aux

    def step(self, batches: Sequence[ReplayBatch]) -> list[dict]:
        b = batches[0].observations.shape[0]
        obs, rewards, next_obs, dones, w = (torch.stack([getattr(x, f) for x in batches]) for f in (
            "observations", "rewards", "next_observations", "dones", "weights"))
        actions = torch.stack([F.pad(x.actions, (0, self.act - s.act_dim)) for x, s in zip(batches, self.sacs)])
        noise = [[F.pad(torch.randn((b, s.act_dim), generator=s.generator), (0, self.act - s.act_dim))
                  for _ in range(2)] for s in self.sacs]  # update's order: the target action's, the policy's
        eps_next, eps_pi = (torch.stack([n[j] for n in noise]) for j in (0, 1))
        alpha = self.log_alpha.detach().exp().unsqueeze(1)
        with torch.no_grad():
            next_a, next_logp = vmap(functional_call, (None, 0, 0))(
                self.actor, (self.ap, self.ab), (next_obs, eps_next, self.mask))
            q1t, q2t = vmap(functional_call, (None, 0, 0))(self.critic, self.tp, (next_obs, next_a))
            target = rewards + self.gamma * (1.0 - dones) * (torch.min(q1t, q2t) - alpha * next_logp)

        cp = list(self.cp.values())
        grads, critic_losses, (td1, td2) = self._grads(self._critic_loss, cp, 1, self.cp, obs, actions, target, w)
        _adam(self.critic_opt, cp, grads)

        params = [*self.ap.values(), self.log_alpha]
        grads, _, (actor_losses, alpha_losses, logp) = self._grads(
            self._actor_loss, params, 2, self.ap, self.log_alpha, self.ab, _detach(self.cp), obs, eps_pi, self.mask,
            self.target_entropy)
        _adam(self.actor_opt, params, grads)
        with torch.no_grad():
            torch._foreach_lerp_(list(self.tp.values()), cp, self.tau)
        stats = torch.stack([critic_losses, actor_losses.detach(), alpha_losses.detach(),
                             self.log_alpha.detach()[:, 0].exp(), -logp.detach().mean(dim=(1, 2))]).tolist()
        td = (0.5 * (td1 + td2)).detach().abs().reshape(len(self.sacs), -1).numpy()
        keys = ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy")
        return [{**{k: stats[j][i] for j, k in enumerate(keys)}, "td_errors": td[i]} for i in range(len(self.sacs))]


def _detach(x):
    return {k: v.detach() for k, v in x.items()} if isinstance(x, dict) else x.detach()


def _adam(opt: torch.optim.Optimizer, params: list, grads) -> None:
    for p, g in zip(params, grads):
        p.grad = g.contiguous()
    opt.step()


class FuncUpdate:
    """``update_together`` as torch.func: one ``FuncGroup`` (padded) or one per action size (grouped)."""

    def __init__(self, sacs: Sequence[SAC], grouped: bool, func_grad: bool) -> None:
        keys = [s.act_dim if grouped else 0 for s in sacs]
        self.index = [[i for i, k in enumerate(keys) if k == key] for key in dict.fromkeys(keys)]
        self.groups = [FuncGroup([sacs[i] for i in idx], func_grad) for idx in self.index]

    def __call__(self, batches: Sequence[ReplayBatch]) -> list[dict]:
        out: list[dict] = [{}] * len(batches)
        for idx, g in zip(self.index, self.groups):
            for i, o in zip(idx, g.step([batches[i] for i in idx])):
                out[i] = o
        return out
# ---- torch.func prototype: core end -----------------------------------------------------------------------------


Update = Callable[[Sequence[ReplayBatch]], list[dict]]
VARIANTS: dict[str, Callable[[list[SAC]], Update]] = {
    "plain": lambda sacs: lambda batches: [s.update(b) for s, b in zip(sacs, batches)],
    "batched": lambda sacs: lambda batches: update_together(sacs, batches),
    "func_padded_autograd": lambda sacs: FuncUpdate(sacs, grouped=False, func_grad=False),
    "func_padded_func_grad": lambda sacs: FuncUpdate(sacs, grouped=False, func_grad=True),
    "func_grouped_autograd": lambda sacs: FuncUpdate(sacs, grouped=True, func_grad=False),
    "func_grouped_func_grad": lambda sacs: FuncUpdate(sacs, grouped=True, func_grad=True),
}


def six_learners(seed: int) -> tuple[list[SAC], list[PrioritizedReplayBuffer], LearningConfig]:
    """The six agents' learners and buffers, configured as ``HyperparameterAgent.__init__`` does."""
    lc = LearningConfig()
    cfg = SACConfig(hidden=lc.hidden, gamma=lc.gamma, actor_lr=lc.lr, critic_lr=lc.lr, alpha_lr=lc.lr,
                    zero_init_mean=True, init_log_std=lc.init_log_std, init_alpha=0.1)
    bound = math.log(2.0)
    sacs, bufs = [], []
    for i, (_, act) in enumerate(AGENTS):
        sacs.append(SAC(OBS, act, [-bound] * act, [bound] * act, cfg, seed=seed + 10 * i))
        buf = PrioritizedReplayBuffer(lc.buffer_size, OBS, act, seed=seed + 10 * i + 1)
        rng = np.random.default_rng(seed + 10 * i + 2)
        for _ in range(FILL):
            buf.add(rng.normal(size=OBS), rng.uniform(-bound, bound, act), rng.normal(), rng.normal(size=OBS),
                    bool(rng.random() < 0.05))
        bufs.append(buf)
    return sacs, bufs, lc


def check(seed: int, steps: int = 20) -> dict:
    """Each variant against plain ``SAC.update`` from the same state and the same batches: the largest absolute
    difference of the first update's critic losses (and other outputs), and of the critic losses at ``steps``."""
    ref_sacs, bufs, lc = six_learners(seed)
    history = [[b.sample(lc.batch_size) for b in bufs] for _ in range(steps)]
    start = copy.deepcopy(ref_sacs)
    ref = [VARIANTS["plain"](ref_sacs)(batches) for batches in history]
    out = {}
    for name, make in VARIANTS.items():
        if name == "plain":
            continue
        update = make(copy.deepcopy(start))
        got = [update(batches) for batches in history]
        first = {k: max(abs(a[k] - b[k]) for a, b in zip(ref[0], got[0]))
                 for k in ("critic_loss", "actor_loss", "alpha_loss", "alpha", "entropy")}
        first["td_errors"] = max(float(np.abs(a["td_errors"] - b["td_errors"]).max()) for a, b in zip(ref[0], got[0]))
        last = max(abs(a["critic_loss"] - b["critic_loss"]) for a, b in zip(ref[-1], got[-1]))
        out[name] = {"first_update_max_abs_diff": first, f"critic_loss_max_abs_diff_at_update_{steps}": last,
                     "first_critic_loss_within_1e-5": first["critic_loss"] <= 1e-5}
    return out


def _summary(ms: list[float]) -> dict:
    q = np.percentile(ms, [25, 50, 75])
    return {"median_ms": round(float(q[1]), 4), "iqr_ms": round(float(q[2] - q[0]), 4),
            "p25_ms": round(float(q[0]), 4), "p75_ms": round(float(q[2]), 4),
            "mean_ms": round(statistics.fmean(ms), 4), "min_ms": round(min(ms), 4)}


def timings(seed: int, warmup: int, repeats: int) -> tuple[dict, dict]:
    runs = {}
    for name, make in VARIANTS.items():
        sacs, bufs, lc = six_learners(seed)
        runs[name] = (make(sacs), bufs, lc.batch_size)
    raw: dict[str, list[float]] = {name: [] for name in runs}
    other: list[float] = []
    for rep in range(warmup + repeats):
        for name, (update, bufs, bs) in runs.items():
            t0 = time.perf_counter()
            batches = [b.sample(bs) for b in bufs]
            t1 = time.perf_counter()
            outs = update(batches)
            t2 = time.perf_counter()
            for buf, bt, o in zip(bufs, batches, outs):
                buf.update_priorities(bt.indices, o["td_errors"])
            t3 = time.perf_counter()
            if rep >= warmup:
                raw[name].append(1000 * (t2 - t1))
                if name == "plain":
                    other.append(1000 * ((t1 - t0) + (t3 - t2)))
    return raw, {"sample_and_priorities_ms": _summary(other)}


def core_lines() -> int:
    lines = Path(__file__).read_text().splitlines()
    begin = next(i for i, s in enumerate(lines) if s.startswith("# ---- torch.func prototype: core begin"))
    end = next(i for i, s in enumerate(lines) if s.startswith("# ---- torch.func prototype: core end"))
    return end - begin - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.repeats < 200:
        ap.error("--repeats must be >= 200")
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    checks = check(args.seed)
    raw, shared = timings(args.seed, args.warmup, args.repeats)
    # The 4.9 s epoch and agent_step_time.json were measured together; where this machine is slower today, the
    # plain updates' ratio to that file's ``alone`` (the same six plain updates) rescales the shares to them.
    ref = json.loads((ROOT / "docs/bench/agent_step_time.json").read_text())["six_agents_update_ms"]
    scale = ref["alone"] / float(np.median(raw["plain"]))
    variants = {}
    for name, ms in raw.items():
        s = _summary(ms)
        per_epoch = GRADIENT_STEPS * s["median_ms"] / 1000
        variants[name] = {**s, "per_epoch_s_at_8_steps": round(per_epoch, 5),
                          "share_of_4.9s_epoch": round(per_epoch / EPOCH_S, 5),
                          "share_of_4.9s_epoch_rescaled": round(scale * per_epoch / EPOCH_S, 5)}
    batched_lines = len((ROOT / "hypera_nnunet/rl/batched.py").read_text().splitlines())
    res = {
        "command": "flock /tmp/cpu.lock .venv/bin/python benchmarks/sac_update_variants.py --out "
                   f"{args.out} --warmup {args.warmup} --repeats {args.repeats} --seed {args.seed}",
        "machine": {"nproc": len(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "python": platform.python_version(),
                    "loadavg_before": [round(x, 2) for x in load_before],
                    "loadavg_after": [round(x, 2) for x in os.getloadavg()]},
        "setup": {"agents": dict(AGENTS), "obs": OBS, "hidden": list(LearningConfig().hidden),
                  "batch": LearningConfig().batch_size, "replay": f"PrioritizedReplayBuffer, {FILL} random transitions",
                  "warmup": args.warmup, "repeats": args.repeats, "epoch_s": EPOCH_S,
                  "gradient_steps": GRADIENT_STEPS, "timed": "the update call of all six agents, interleaved rounds"},
        "update_of_six_agents": variants,
        "outside_update": shared,
        "rescaling": {"agent_step_time_json": ref, "factor": round(scale, 4),
                      "note": "share_of_4.9s_epoch_rescaled = share * agent_step_time.json alone / plain median"},
        "faithfulness_vs_plain": checks,
        "lines": {"rl/batched.py": batched_lines, "torch_func_prototype_core": core_lines()},
        "raw_ms": {name: [round(x, 4) for x in ms] for name, ms in raw.items()},
    }
    atomic_write_json(args.out, res)
    print(dumps({k: v for k, v in res.items() if k != "raw_ms"}))


if __name__ == "__main__":
    main()
