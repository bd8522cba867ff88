"""The coordinator: runs the agents of one HYPERA run at nnU-Net's hooks.

Orchestration only. It schedules each agent at its hook, builds one shared state from nnU-Net's
signals (:mod:`.signals`), resolves conflicting proposals with the configured strategy
(:mod:`.strategies`), applies rate limits and bounds, shapes rewards (:mod:`.rewards`), anneals
exploration (:mod:`.schedule`), rolls back through the guard (:mod:`.safeguards`), and writes one
decision line per epoch (:mod:`.decision_log`), with its time accounting (:mod:`.timing`).

The trainer calls ``super()`` and then the coordinator; the coordinator never imports nnU-Net and
talks to the trainer only through a :class:`~.knobset.KnobSet`.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from hypera_nnunet.agents import AGENTS, Hook, HyperparameterAgent, Proposal, learn_together
from hypera_nnunet.control.decision_log import DecisionLog, fingerprint
from hypera_nnunet.control.knobset import KnobSet
from hypera_nnunet.control.rewards import RewardShaper
from hypera_nnunet.control.safeguards import RollbackGuard, TrustTracker
from hypera_nnunet.control.schedule import exploration_phase, target_entropy
from hypera_nnunet.control.signals import N_BASE_FEATURES, Signals
from hypera_nnunet.control.strategies import resolve
from hypera_nnunet.control.timing import Timings, single_thread
from hypera_nnunet.errors import ConfigError
from hypera_nnunet.settings import HyperaConfig

#: each agent's seed is ``seed * SEED_STRIDE + AGENT_SEED_STEP * index`` (its generators are its own)
SEED_STRIDE = 1000
AGENT_SEED_STEP = 17


class Coordinator:
    """Runs the agents of one HYPERA run.

    :param config: the run's effective configuration.
    :param knobs: the trainer's knobs.
    :param num_epochs: the run's epochs (progress, exploration phases and the terminal flag).
    :param log: where decision lines go (None: not written, e.g. on ranks other than 0).
    :param guard: rollback of the trainer's network and optimizer (None: no rollback).
    :param broadcast: under DDP, returns rank 0's copy of what it is given on every rank (knob values and
        the rollback verdict); None: one process.
    :param on_event: called with one line for each rollback, switch-off and phase change (the
        trainer writes them to nnU-Net's training log).
    :param seed: the agents' base seed (agent ``i`` gets ``seed + AGENT_SEED_STEP * i``); None:
        ``config.seed * SEED_STRIDE``. The trainer derives it from (run seed, fold), so folds differ.
    :param reference: the counterfactual reward's reference curve (pseudo-Dice EMA by epoch; None: the plain
        change, see :mod:`.rewards`), and ``reference_note`` what it is (written in every decision line when given).
    :param recorder: given each completed transition (``add(agent, obs, action, reward, next_obs, done,
        epoch)``), e.g. :class:`hypera_nnunet.store.RunRecorder`; None: kept in the agents' buffers only.
    """

    def __init__(self, config: HyperaConfig, knobs: KnobSet, num_epochs: int, log: DecisionLog | None = None,
                 guard: RollbackGuard | None = None, broadcast: Callable | None = None,
                 on_event: Callable[[str], None] | None = None, seed: int | None = None,
                 reference: list[float] | None = None, reference_note: str | None = None, recorder=None) -> None:
        self.config = config
        self.knobs = knobs
        self.num_epochs = num_epochs
        self.log = log
        self.guard = guard
        self.broadcast = broadcast
        self.on_event = on_event or (lambda line: None)
        self.frozen = config.transfer.mode == "frozen"
        self.knob_order = tuple(knobs.names)
        self.agents: list[HyperparameterAgent] = []
        self.skipped: dict[str, str] = {}
        obs_dim = N_BASE_FEATURES + len(self.knob_order)
        base_seed = config.seed * SEED_STRIDE if seed is None else int(seed)
        for i, (name, settings) in enumerate(config.agents.items()):
            cls = AGENTS[name]
            wanted = cls.wanted_knobs(settings)
            unknown = [k for k in wanted if k not in knobs.registered]
            if unknown:
                raise ConfigError(f"agent '{name}' names unknown knob(s) {unknown}; registered knobs: "
                                  f"{', '.join(knobs.registered)}")
            available = tuple(k for k in wanted if k in self.knob_order)
            if not available:
                self.skipped[name] = f"none of its knobs {wanted} exists in this trainer"
                continue
            self.agents.append(cls(settings, obs_dim, knobs=available, learning=config.learning,
                                   seed=base_seed + AGENT_SEED_STEP * i))
        self.trust = {a.name: TrustTracker(config.safeguards) for a in self.agents}
        for a in self.agents:
            a.set_trust(self.trust[a.name].level)
        self.shaper = RewardShaper(config.safeguards, reference,
                                   config.reward.terminal_weight if reference is not None else 0.0)
        self.reference_note = reference_note  # None: the reward compares with nothing (and lines do not say)
        self.recorder = recorder
        self.log_m: dict[str, float] = {k: 0.0 for k in self.knob_order}  # current log-multipliers
        self.good_log_m = dict(self.log_m)
        self.last_grad_norms: list[float] = []  # the last finished epoch's, for the next epoch-start state
        self.consecutive_rollbacks = 0
        self.disabled = False
        self.timings = Timings()
        self.record: dict = {}
        self._phase: str | None = None
        # the last line's fingerprint_end: nothing changes the state between an epoch's end and the next
        # epoch's start, so the next fingerprint_start reuses it (one hash per epoch saved)
        self._end_fingerprint: str | None = None

    @property
    def learning_enabled(self) -> bool:
        return not (self.frozen or self.config.shadow or self.disabled)

    # ---- deciding and applying -----------------------------------------------------------------
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

    def _targets(self, proposals: dict[str, list[Proposal]]) -> dict[str, float]:
        """One value per knob: the strategy's, then the strictest rate limit among the proposers."""
        targets = {}
        for knob, props in proposals.items():
            step = min(p.max_step for p in props)
            cur = self.log_m[knob]
            targets[knob] = float(np.clip(resolve(props, self.config.strategy), cur - step, cur + step))
        return targets

    def _decide(self, hook: Hook, signals: Signals, agents: list[HyperparameterAgent] | None = None) -> None:
        agents = [a for a in self.agents if a.hook == hook] if agents is None else agents
        obs = signals.features(self.log_m, self.knob_order)
        phase, noise = exploration_phase(signals.progress, self.config.exploration)
        self._note_phase(phase, signals.epoch)
        deterministic = self.frozen or phase == "fine_tune"
        proposals: dict[str, list[Proposal]] = defaultdict(list)
        raw = {}
        for a in agents:
            with self.timings.timed(a.name):
                a.set_target_entropy(target_entropy(len(a.knobs), signals.progress, self.config.exploration))
                action = a.act(obs, deterministic=deterministic, noise_scale=noise)
                raw[a.name] = action.tolist()
                for p in a.propose(action):
                    proposals[p.knob].append(p)
        with self.timings.timed("coordinator"):
            executed = self._apply_all(self._targets(proposals))
            if self.learning_enabled:
                for a in agents:
                    a.remember(obs, np.array([executed[k] for k in a.knobs], dtype=np.float32))
        if hook == Hook.ITERATION:
            for name, act in raw.items():
                self.record.setdefault("iteration_actions", {}).setdefault(name, []).append(act)
        else:
            self.record.setdefault("actions", {}).update(raw)
        self.record.setdefault("phase", phase)

    def _note_phase(self, phase: str, epoch: int) -> None:
        if phase != self._phase:
            if self._phase is not None:
                self.on_event(f"HYPERA: epoch {epoch}: exploration phase {self._phase} -> {phase}")
            self._phase = phase

    # ---- hooks called by the trainer ------------------------------------------------------------
    def on_train_start(self, start_epoch: int = 0) -> None:
        self._end_fingerprint = None
        if self.log is not None:
            msg = self.log.truncate_from(start_epoch).message(self.log.path)
            if msg:
                self.on_event(msg)
        for a in self.agents:
            a.on_train_start(self)
        if self.guard is not None and self.guard.snapshot_state is None:
            self.guard.snapshot()
        self._apply_all(self.log_m)

    def on_epoch_start(self, signals: Signals) -> None:
        """After nnU-Net's on_train_epoch_start: LR, loss, batch size, augmentation, optimizer agents."""
        with single_thread():
            self.timings.reset()
            with self.timings.timed("coordinator"):
                fp = self._end_fingerprint or fingerprint(self.state_dict(copy_tensors=False))
                self.record = {"epoch": signals.epoch, "fingerprint_start": fp}
            if self.disabled:
                self._apply_all({})
                return
            self._decide(Hook.EPOCH_START, signals)

    def iteration_agents(self, iteration: int) -> list[HyperparameterAgent]:
        """Agents that re-decide before training iteration ``iteration`` (1-based within the epoch)."""
        if self.disabled or iteration <= 0:
            return []
        return [a for a in self.agents if a.every_n_iterations > 0 and iteration % a.every_n_iterations == 0]

    def on_iteration(self, iteration: int, signals: Signals) -> None:
        """Within the epoch, before an optimizer step: the learning-rate agent's iteration decisions."""
        agents = self.iteration_agents(iteration)
        if agents:
            with single_thread():
                self._decide(Hook.ITERATION, signals, agents)

    def on_epoch_end(self, signals: Signals, extra_s: dict[str, float] | None = None) -> bool:
        """After validation: rollback check, rewards, learning, after-validation agents, the decision line.

        :param signals: the epoch's signals, validation included.
        :param extra_s: seconds the trainer spent on HYPERA's behalf outside the coordinator since the last
            decision line (gradient norms, state signals, plots); they go into ``overhead_s`` and its total.
        :returns: True when the trainer's state was rolled back to the last good epoch.
        """
        for k, v in (extra_s or {}).items():
            self.timings.add(k, v)
        with single_thread():
            t0, timed0 = time.perf_counter(), self.timings.total()
            rolled_back, reason = self._safeguard(signals)
            self.last_grad_norms = list(signals.grad_norms)
            rewards = self.shaper.rewards(signals, self.agents, self.log_m, rolled_back)
            self._complete(signals, rewards, rolled_back)
            stats = {}
            if self.learning_enabled:
                with self.timings.timed("learn"):
                    stats = {name: {k: round(v, 5) for k, v in out.items()}
                             for name, out in learn_together(self.agents).items()}
            if not self.disabled:
                self._decide(Hook.AFTER_VALIDATION, signals)
            self._finish_record(signals, rewards, reason if rolled_back else None, stats)
            # the coordinator's own share: this hook's time not already attributed by the sections timed inside
            self.timings.add("coordinator", time.perf_counter() - t0 - (self.timings.total() - timed0))
            self.record["overhead_s"] = self.timings.record(self.knobs.pop_extra_timings())
            if self.log is not None:
                self.log.append(self.record)
        return rolled_back

    def _safeguard(self, signals: Signals) -> tuple[bool, str | None]:
        """Roll back when the guard finds the epoch bad; switch the agents off after repeated rollbacks."""
        self.record.setdefault("epoch", signals.epoch)
        self.record["values"] = {k: self.knobs.value(k) for k in self.knob_order}
        self.record["multipliers"] = {k: round(math.exp(v), 6) for k, v in self.log_m.items()}
        ema = signals.ema_dice[-1] if signals.ema_dice else None
        reason = self.guard.reason(signals.finite, ema) \
            if self.guard is not None and self.config.safeguards.rollback else None
        if self.broadcast is not None:  # DDP: rank 0's verdict, so that every rank rolls back together
            reason = self.broadcast(reason)
        if reason is not None and self.config.shadow:  # shadow applies nothing, a rollback included
            self.record["would_roll_back"] = reason
            reason = None
        if reason is None or not self.guard.restore():
            self.consecutive_rollbacks = 0
            if self.guard is not None and ema is not None and math.isfinite(ema):
                self.guard.accept(ema)
            self.good_log_m = dict(self.log_m)
            return False, reason
        self.consecutive_rollbacks += 1
        self._apply_all(self.good_log_m)
        for a in self.agents:
            a.set_trust(self.trust[a.name].penalise())
        self.on_event(f"HYPERA: epoch {signals.epoch}: rolled back to the last good epoch ({reason})")
        if self.consecutive_rollbacks >= self.config.safeguards.max_consecutive_rollbacks and not self.disabled:
            self.disabled = True
            self._apply_all({})
            self.on_event(f"HYPERA: epoch {signals.epoch}: agents switched off after {self.consecutive_rollbacks} "
                          "consecutive rollbacks; nnU-Net's own settings from now on")
        return True, reason

    def _complete(self, signals: Signals, rewards: dict[str, float], rolled_back: bool) -> None:
        next_obs = signals.features(self.log_m, self.knob_order)
        for a in self.agents:
            with self.timings.timed(a.name):
                if a.pending:
                    added = a.complete(rewards[a.name], next_obs, done=signals.epoch + 1 >= self.num_epochs)
                    if self.recorder is not None:
                        for t in added:
                            self.recorder.add(a.name, *t, epoch=signals.epoch)
                    if not rolled_back:
                        a.set_trust(self.trust[a.name].update(rewards[a.name]))

    def _finish_record(self, signals: Signals, rewards: dict[str, float], rollback: str | None, stats: dict) -> None:
        self.record.update(
            rewards={a.name: rewards[a.name] for a in self.agents}, trust={a.name: a.trust for a in self.agents},
            rollback=rollback, applied=not (self.config.shadow or self.disabled),
            learning=stats, state=signals.summary(), next_values={k: self.knobs.value(k) for k in self.knob_order},
            agent_state={a.name: {"buffer": len(a.buffer), "updates": a.updates, "decisions": a.decisions}
                         for a in self.agents},
        )
        if self.reference_note is not None:
            self.record["reward_reference"] = self.reference_note
        self.record["fingerprint_end"] = self._end_fingerprint = fingerprint(self.state_dict(copy_tensors=False))

    def on_train_end(self) -> None:
        for a in self.agents:
            a.on_train_end(self)

    # ---- persistence ---------------------------------------------------------------------------
    def state_dict(self, copy_tensors: bool = True) -> dict:
        return {
            "agents": {a.name: a.state_dict(copy_tensors=copy_tensors) for a in self.agents},
            "trust": {k: t.state_dict() for k, t in self.trust.items()},
            "shared_norm": self.shaper.shared_norm.state_dict(), "log_m": dict(self.log_m),
            "good_log_m": dict(self.good_log_m), "grad_history": list(self.shaper.grad_history),
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
        self.shaper.shared_norm.load_state_dict(state["shared_norm"])
        self.log_m.update(state["log_m"])
        self.good_log_m = dict(state["good_log_m"])
        self.shaper.grad_history = list(state["grad_history"])
        self.last_grad_norms = list(state.get("last_grad_norms", []))
        self.consecutive_rollbacks = int(state["consecutive_rollbacks"])
        self.disabled = bool(state["disabled"])
        if self.guard is not None and state.get("guard") is not None:
            self.guard.load_state_dict(state["guard"])

    def policies(self) -> dict:
        """What transfer needs: each agent's networks and temperature, and the run's config."""
        return {"config": self.config.to_dict(), "agents": {a.name: a.policy_state() for a in self.agents}}

    def load_policies(self, policies: dict, source: str) -> list[str]:
        """Warm-start or freeze from :meth:`policies` of an earlier run; returns the agents loaded.

        :param source: the file they came from, named in errors."""
        loaded = []
        for a in self.agents:
            p = policies["agents"].get(a.name)
            if p is not None:
                a.load_policy(p, source)
                loaded.append(a.name)
        return loaded
