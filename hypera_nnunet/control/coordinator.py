"""The coordinator: schedules agents at their hooks, keeps one shared state, resolves conflicts,
shares rewards, anneals exploration, applies safeguards, and writes one decision line per epoch.

The trainer calls ``super()`` and then the coordinator; the coordinator never imports nnU-Net. It
talks to the trainer through a *knob set*: an object with ``names`` (the available knobs),
``apply(name, log_multiplier) -> executed log_multiplier`` and ``value(name)`` (the real value).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hypera_nnunet.agents import AGENTS, Hook, HyperparameterAgent, Proposal, learn_together
from hypera_nnunet.config import HyperaConfig
from hypera_nnunet.rl import RunningZScore
from hypera_nnunet.safeguards import RollbackGuard, TrustTracker
from hypera_nnunet.signals import N_BASE_FEATURES, Signals


@contextlib.contextmanager
def single_thread():
    """Run the agents' tiny networks on one thread. With several threads, each small op waits for
    OpenMP workers, and on a busy machine (nnU-Net's dataloaders, other jobs) the waits dominate: we
    measured 100 ms instead of ~2 ms per SAC update on a loaded 2-core machine."""
    old = torch.get_num_threads()
    if old == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def fingerprint(state) -> str:
    """A short hash of a nested state (tensors, arrays, scalars): equal states, equal fingerprints."""
    import hashlib

    h = hashlib.sha256()

    def feed(x):
        if isinstance(x, dict):
            for k in sorted(x, key=str):
                h.update(str(k).encode())
                feed(x[k])
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        elif torch.is_tensor(x):
            h.update(x.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(x, np.ndarray):
            h.update(np.ascontiguousarray(x).tobytes())
        else:
            h.update(repr(x).encode())

    feed(state)
    return h.hexdigest()[:16]


def resolve(proposals: list[Proposal], strategy: str) -> float:
    """Combine proposals for one knob (log-multiplier units).

    * ``weighted_average``: sum of ``confidence * value`` over the sum of confidences.
    * ``priority``: the value of the highest-priority proposal (the first one on ties).
    * ``consensus``: if all proposals move the same way, the smallest move; otherwise 0 (nnU-Net's value).
    """
    if not proposals:
        raise ValueError("no proposal to resolve")
    if len(proposals) == 1:
        return proposals[0].value
    if strategy == "weighted_average":
        w = sum(p.confidence for p in proposals)
        if w <= 0:
            return sum(p.value for p in proposals) / len(proposals)
        return sum(p.confidence * p.value for p in proposals) / w
    if strategy == "priority":
        return max(enumerate(proposals), key=lambda ip: (ip[1].priority, -ip[0]))[1].value
    if strategy == "consensus":
        signs = {int(np.sign(p.value)) for p in proposals if p.value != 0}
        if len(signs) > 1:
            return 0.0
        return min((p.value for p in proposals), key=abs)
    raise ValueError(f"unknown strategy {strategy!r}")


def exploration_phase(progress: float, config) -> tuple[str, float]:
    """``(phase, noise_scale)``: explore (1.0), exploit (``exploit_noise``), fine_tune (deterministic)."""
    if progress < config.explore_until:
        return "explore", 1.0
    if progress < config.exploit_until:
        return "exploit", config.exploit_noise
    return "fine_tune", 0.0


class DecisionLog:
    """``decisions.jsonl``: one JSON line per epoch, appended and flushed. Only rank 0 writes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def truncate_from(self, epoch: int) -> None:
        """On resume: keep the lines of epochs before ``epoch`` (and drop a torn last line)."""
        if not self.path.is_file():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line)["epoch"] < epoch:
                    keep.append(line)
            except (json.JSONDecodeError, KeyError):
                continue
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(k + "\n" for k in keep))
        os.replace(tmp, self.path)

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=_json_default, allow_nan=True) + "\n")
            f.flush()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class Coordinator:
    """Runs the agents of one HYPERA run."""

    def __init__(self, config: HyperaConfig, knobs, num_epochs: int, log: DecisionLog | None = None,
                 guard: RollbackGuard | None = None, broadcast: Callable | None = None) -> None:
        self.config = config
        self.knobs = knobs
        self.num_epochs = num_epochs
        self.log = log
        self.guard = guard
        self.broadcast = broadcast  # DDP: rank 0 decides, the others receive (None: single process)
        self.frozen = config.transfer.mode == "frozen"
        self.agents: list[HyperparameterAgent] = []
        self.skipped: dict[str, str] = {}
        self.knob_order = tuple(knobs.names)
        obs_dim = N_BASE_FEATURES + len(self.knob_order)
        for i, (name, settings) in enumerate(config.agents.items()):
            cls = AGENTS[name]
            wanted = cls.wanted_knobs(settings)
            available = tuple(k for k in wanted if k in self.knob_order)
            if not available:
                self.skipped[name] = f"none of its knobs {wanted} exists in this trainer"
                continue
            self.agents.append(cls(settings, obs_dim, knobs=available, learning=config.learning,
                                   seed=config.seed * 1000 + 17 * i))
        self.trust = {a.name: TrustTracker(config.safeguards) for a in self.agents}
        for a in self.agents:
            a.set_trust(self.trust[a.name].level)
        self.shared_norm = RunningZScore()
        self.log_m: dict[str, float] = {k: 0.0 for k in self.knob_order}  # current log-multipliers
        self.good_log_m = dict(self.log_m)
        self.grad_history: list[float] = []
        self.last_grad_norms: list[float] = []  # the last finished epoch's, for the next epoch-start state
        self.consecutive_rollbacks = 0
        self.disabled = False
        self.timings: dict[str, float] = defaultdict(float)
        self.record: dict = {}
        # the last decision line's fingerprint_end: nothing changes the state between an epoch's end and the
        # next epoch's start, so the next fingerprint_start reuses it (one 3-ms hash per epoch saved,
        # benchmarks/agent_step_time.py)
        self._end_fingerprint: str | None = None

    # ---- helpers -------------------------------------------------------------------------------
    @property
    def learning_enabled(self) -> bool:
        return not (self.frozen or self.config.shadow or self.disabled)

    def _timed(self, key: str, t0: float) -> None:
        self.timings[key] += time.perf_counter() - t0

    def _apply_all(self, values: dict[str, float]) -> dict[str, float]:
        """Apply log-multipliers (nnU-Net's value when shadow or disabled); return what was executed."""
        if self.broadcast is not None:
            values = self.broadcast(values)
        executed = {}
        for k in self.knob_order:
            target = 0.0 if (self.config.shadow or self.disabled) else values.get(k, self.log_m[k])
            executed[k] = float(self.knobs.apply(k, target))
        self.log_m.update(executed)
        return executed

    def _decide(self, hook: Hook, signals: Signals, agents: list[HyperparameterAgent] | None = None) -> None:
        agents = [a for a in self.agents if a.hook == hook] if agents is None else agents
        obs = signals.features(self.log_m, self.knob_order)
        phase, noise = exploration_phase(signals.progress, self.config.exploration)
        deterministic = self.frozen or phase == "fine_tune"
        ex = self.config.exploration
        proposals: dict[str, list[Proposal]] = defaultdict(list)
        raw = {}
        for a in agents:
            t0 = time.perf_counter()
            frac = signals.progress
            a.sac.target_entropy = -len(a.knobs) * (ex.entropy_start + (ex.entropy_end - ex.entropy_start) * frac)
            action = a.act(obs, deterministic=deterministic, noise_scale=noise)
            raw[a.name] = action.tolist()
            for p in a.propose(action):
                proposals[p.knob].append(p)
            self._timed(a.name, t0)
        t0 = time.perf_counter()
        targets = {}
        for knob, props in proposals.items():
            v = resolve(props, self.config.strategy)
            step = min(p.max_step for p in props)
            cur = self.log_m[knob]
            targets[knob] = float(np.clip(v, cur - step, cur + step))
        executed = self._apply_all(targets)
        if self.learning_enabled:
            for a in agents:
                a.remember(obs, np.array([executed[k] for k in a.knobs], dtype=np.float32))
        self._timed("coordinator", t0)
        if hook == Hook.ITERATION:
            for name, act in raw.items():
                self.record.setdefault("iteration_actions", {}).setdefault(name, []).append(act)
        else:
            self.record.setdefault("actions", {}).update(raw)
        self.record.setdefault("phase", phase)

    # ---- hooks called by the trainer ----------------------------------------------------------
    def on_train_start(self, start_epoch: int = 0) -> None:
        self._end_fingerprint = None
        if self.log is not None:
            self.log.truncate_from(start_epoch)
        for a in self.agents:
            a.on_train_start(self)
        if self.guard is not None and self.guard.snapshot_state is None:
            self.guard.snapshot()
        self._apply_all(self.log_m)

    def on_epoch_start(self, signals: Signals) -> None:
        """After nnU-Net's on_train_epoch_start: LR, loss, batch size, augmentation, optimizer agents."""
        with single_thread():
            self._on_epoch_start(signals)

    def _on_epoch_start(self, signals: Signals) -> None:
        self.timings = defaultdict(float)
        t0 = time.perf_counter()
        fp = self._end_fingerprint or fingerprint(self.state_dict(copy_tensors=False))
        self.record = {"epoch": signals.epoch, "fingerprint_start": fp}
        self._timed("coordinator", t0)
        if self.disabled:
            self._apply_all({})
            return
        self._decide(Hook.EPOCH_START, signals)

    def iteration_agents(self, iteration: int) -> list[HyperparameterAgent]:
        """Agents that re-decide before training iteration ``iteration`` (1-based within the epoch)."""
        if self.disabled or iteration <= 0:
            return []
        return [a for a in self.agents if getattr(a, "every_n_iterations", 0) > 0
                and iteration % a.every_n_iterations == 0]

    def on_iteration(self, iteration: int, signals: Signals) -> None:
        """Within the epoch, before an optimizer step: the learning-rate agent's iteration decisions."""
        agents = self.iteration_agents(iteration)
        if agents:
            with single_thread():
                self._decide(Hook.ITERATION, signals, agents)

    def on_epoch_end(self, signals: Signals, extra_s: dict[str, float] | None = None) -> bool:
        """After validation. Rewards, learning, rollback, after-validation agents, the decision line.

        ``extra_s``: seconds the trainer spent on HYPERA's behalf outside the coordinator since the last
        decision line (gradient norms, state signals, plots); they go into ``overhead_s`` and its total.
        Returns True when the trainer's state was rolled back to the last good epoch.
        """
        for k, v in (extra_s or {}).items():
            self.timings[k] += float(v)
        with single_thread():
            return self._on_epoch_end(signals)

    def _timed_total(self) -> float:
        return sum(self.timings.values())

    def _on_epoch_end(self, signals: Signals) -> bool:
        t0, timed0 = time.perf_counter(), self._timed_total()
        self.record.setdefault("epoch", signals.epoch)
        self.record["values"] = {k: self.knobs.value(k) for k in self.knob_order}
        self.record["multipliers"] = {k: round(math.exp(v), 6) for k, v in self.log_m.items()}
        ema = signals.ema_dice[-1] if signals.ema_dice else None
        reason = self.guard.reason(signals.finite, ema) if self.guard is not None and self.config.safeguards.rollback \
            else None
        rolled_back = False
        if reason is not None and self.guard is not None and self.guard.restore():
            rolled_back = True
            self.consecutive_rollbacks += 1
            self._apply_all(self.good_log_m)
            for a in self.agents:
                self.trust[a.name].penalise()
                a.set_trust(self.trust[a.name].level)
            if self.consecutive_rollbacks >= self.config.safeguards.max_consecutive_rollbacks:
                self.disabled = True
                self._apply_all({})
        else:
            self.consecutive_rollbacks = 0
            if self.guard is not None and ema is not None and math.isfinite(ema):
                self.guard.accept(ema)
            self.good_log_m = dict(self.log_m)
        self.last_grad_norms = list(signals.grad_norms)
        rewards = self._rewards(signals, rolled_back)
        next_obs = signals.features(self.log_m, self.knob_order)
        for a in self.agents:
            ta = time.perf_counter()
            if a.pending:
                a.complete(rewards[a.name], next_obs, done=signals.epoch + 1 >= self.num_epochs)
                a.rewards.append(rewards[a.name])
                if not rolled_back:
                    a.set_trust(self.trust[a.name].update(rewards[a.name]))
            self._timed(a.name, ta)
        stats = {}
        if self.learning_enabled:
            ta = time.perf_counter()
            stats = {name: {k: round(v, 5) for k, v in out.items()}
                     for name, out in learn_together(self.agents).items()}
            self._timed("learn", ta)
        if not self.disabled:
            self._decide(Hook.AFTER_VALIDATION, signals)
        self.record.update(
            rewards={a.name: rewards[a.name] for a in self.agents}, trust={a.name: a.trust for a in self.agents},
            rollback=reason if rolled_back else None, applied=not (self.config.shadow or self.disabled),
            learning=stats, state=signals.summary(), next_values={k: self.knobs.value(k) for k in self.knob_order},
            agent_state={a.name: {"buffer": len(a.buffer), "updates": a.sac.n_updates, "decisions": a.decisions}
                         for a in self.agents},
        )
        self.record["fingerprint_end"] = self._end_fingerprint = fingerprint(self.state_dict(copy_tensors=False))
        # the coordinator's own share: this hook's time not already attributed by the sections timed inside it
        self.timings["coordinator"] += time.perf_counter() - t0 - (self._timed_total() - timed0)
        self.record["overhead_s"] = {k: round(v, 6) for k, v in self.timings.items()}
        self.record["overhead_s"]["total"] = round(sum(self.timings.values()), 6)
        if hasattr(self.knobs, "pop_extra_timings"):  # included in 'coordinator' and 'total' already
            self.record["overhead_s"].update({k: round(v, 6) for k, v in self.knobs.pop_extra_timings().items()})
        if self.log is not None:
            self.log.append(self.record)
        return rolled_back

    def _rewards(self, signals: Signals, rolled_back: bool) -> dict[str, float]:
        sg = self.config.safeguards
        if rolled_back:
            return {a.name: sg.rollback_penalty for a in self.agents}
        if not signals.finite:
            return {a.name: sg.nan_penalty for a in self.agents}
        ema = signals.ema_dice
        shared = self.shared_norm(ema[-1] - ema[-2] if len(ema) >= 2 else 0.0)
        g_max = max(signals.grad_norms) if signals.grad_norms else 0.0
        if self.grad_history and g_max > sg.explode_factor * float(np.median(self.grad_history)):
            shared += sg.explode_penalty
        if signals.grad_norms:
            self.grad_history.append(float(np.mean(signals.grad_norms)))
        out = {}
        for a in self.agents:
            special = a.special_norm(a.specialised_reward(signals))
            prior = float(np.mean([(self.log_m[k] / a.bound) ** 2 for k in a.knobs]))
            s = a.settings.share
            out[a.name] = float(s * shared + (1 - s) * special - sg.prior_weight * prior)
        return out

    def on_train_end(self) -> None:
        for a in self.agents:
            a.on_train_end(self)

    # ---- persistence ---------------------------------------------------------------------------
    def state_dict(self, copy_tensors: bool = True) -> dict:
        return {
            "agents": {a.name: a.state_dict(copy_tensors=copy_tensors) for a in self.agents},
            "trust": {k: t.state_dict() for k, t in self.trust.items()},
            "shared_norm": self.shared_norm.state_dict(), "log_m": dict(self.log_m),
            "good_log_m": dict(self.good_log_m), "grad_history": list(self.grad_history),
            "last_grad_norms": list(self.last_grad_norms),
            "consecutive_rollbacks": self.consecutive_rollbacks, "disabled": self.disabled,
            "guard": self.guard.state_dict() if self.guard is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self._end_fingerprint = None
        missing = {a.name for a in self.agents} - set(state["agents"])
        if missing:
            raise ValueError(f"checkpoint has no state for agent(s) {sorted(missing)}")
        for a in self.agents:
            a.load_state_dict(state["agents"][a.name])
        for k, t in self.trust.items():
            t.load_state_dict(state["trust"][k])
        self.shared_norm.load_state_dict(state["shared_norm"])
        self.log_m.update(state["log_m"])
        self.good_log_m = dict(state["good_log_m"])
        self.grad_history = list(state["grad_history"])
        self.last_grad_norms = list(state.get("last_grad_norms", []))
        self.consecutive_rollbacks = int(state["consecutive_rollbacks"])
        self.disabled = bool(state["disabled"])
        if self.guard is not None and state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])

    def policies(self) -> dict:
        """What transfer needs: each agent's networks and temperature, and the run's config."""
        return {"config": self.config.to_dict(),
                "agents": {a.name: {"knobs": list(a.knobs), "sac": a.sac.state_dict()} for a in self.agents}}

    def load_policies(self, policies: dict, source: str) -> list[str]:
        """Warm-start or freeze from :meth:`policies` of an earlier run; returns the agents loaded."""
        loaded = []
        for a in self.agents:
            p = policies["agents"].get(a.name)
            if p is None:
                continue
            if list(p["knobs"]) != list(a.knobs):
                raise ValueError(f"{source}: agent '{a.name}' was saved with knobs {p['knobs']}, this run has "
                                 f"{list(a.knobs)}")
            a.sac.load_state_dict(p["sac"], policy_only=True)
            loaded.append(a.name)
        return loaded
