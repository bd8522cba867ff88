"""HYPERA's settings: frozen, typed dataclasses, each field with the range it accepts.

A leaf module (standard library and :mod:`hypera_nnunet.errors` only). Every field carries a
:class:`Rule` (:func:`setting`); constructing a dataclass checks them all, so a bad value fails when
the configuration is read, before nnU-Net loads any data. A failed check raises :class:`SettingError`
naming the key, the value and the allowed range; :mod:`hypera_nnunet.config` adds the dotted path
and the file.

What needs the registries (which agents exist, each agent's ``Settings`` class, the conflict
strategies) is checked by :mod:`hypera_nnunet.config`, which installs them here with
:func:`use_registry`; this module imports no agent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from hypera_nnunet.errors import ConfigError

TRANSFER_MODES = ("warm_start", "frozen")
_FLOAT_MAX = sys.float_info.max
#: a rule's kind -> how messages name it
_KINDS = {"number": "a number", "int": "an integer", "bool": "true or false", "text": "a non-empty string",
          "ints": "a non-empty list of integers"}


# ---- rules ----------------------------------------------------------------------------------------
def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e16 else f"{x:g}"


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for one-line error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class SettingError(ConfigError):
    """A value outside what its setting accepts.

    :param key: the setting's (dotted) name.
    :param value: the rejected value.
    :param expected: what the setting accepts, e.g. ``"a number > 1"``.
    """

    def __init__(self, key: str, value: Any, expected: str) -> None:
        self.key, self.value, self.expected = key, value, expected
        super().__init__(f"'{key}' must be {expected}, got {show(value)}")

    def within(self, prefix: str) -> SettingError:
        """The same error with its key below ``prefix`` (``"safeguards"`` + ``"trust_init"``)."""
        return SettingError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.expected)


@dataclass(frozen=True)
class Rule:
    """What one setting accepts.

    :param kind: ``"number"`` (finite int or float), ``"int"``, ``"bool"``, ``"text"`` (a non-empty string)
        or ``"ints"`` (a non-empty list of integers).
    :param ge, gt, le, lt: bounds (for ``"ints"``: of each element).
    :param optional: null (``None``) is accepted too.
    :param choices: for ``"text"``: the accepted strings.
    """

    kind: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    optional: bool = False
    choices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"Rule kind must be one of {', '.join(_KINDS)}, got {self.kind!r}")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.optional
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "text":
            return isinstance(value, str) and bool(value) and (not self.choices or value in self.choices)
        if self.kind == "ints":
            return isinstance(value, (list, tuple)) and bool(value) and all(self._number_ok(v, True) for v in value)
        return self._number_ok(value, self.kind == "int")

    def _number_ok(self, v: Any, integer: bool) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return False
        if isinstance(v, float) and not math.isfinite(v):
            return False
        if isinstance(v, int) and not integer and abs(v) > _FLOAT_MAX:  # float(v) would overflow
            return False
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def normalise(self, value: Any) -> Any:
        """The value in the field's type: floats for numbers, a tuple of ints for ``"ints"``."""
        if value is None:
            return None
        if self.kind == "number":
            return float(value)
        if self.kind == "ints":
            return tuple(value)
        return value

    def describe(self) -> str:
        """The accepted values in words, e.g. ``"a number in [0, 1)"``, ``"an integer >= 1 or null"``."""
        base = _KINDS[self.kind]
        if self.choices:
            base = "one of " + ", ".join(self.choices)
        bounds = self._bounds()
        if self.kind == "number" and not bounds:
            base = "a finite number"
        if bounds:
            base += (" each " if self.kind == "ints" else " ") + bounds
        return base + (" or null" if self.optional else "")

    def _bounds(self) -> str:
        lo = (self.ge, "[") if self.ge is not None else (self.gt, "(") if self.gt is not None else None
        hi = (self.le, "]") if self.le is not None else (self.lt, ")") if self.lt is not None else None
        if lo and hi:
            return f"in {lo[1]}{_fmt(lo[0])}, {_fmt(hi[0])}{hi[1]}"
        if lo:
            return f"{'>=' if lo[1] == '[' else '>'} {_fmt(lo[0])}"
        if hi:
            return f"{'<=' if hi[1] == ']' else '<'} {_fmt(hi[0])}"
        return ""


def setting(default: Any, rule: Rule):
    """A dataclass field with a default and the :class:`Rule` its values must pass."""
    return field(default=default, metadata={"rule": rule})


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass ``obj`` against its rule and store it in the field's type.

    :raises SettingError: for the first field whose value its rule rejects.
    """
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("rule")
        if rule is None:
            continue
        value = getattr(obj, f.name)
        if not rule.accepts(value):
            raise SettingError(f.name, value, rule.describe())
        object.__setattr__(obj, f.name, rule.normalise(value))


def _section(obj: Any, name: str, cls: type) -> None:
    value = getattr(obj, name)
    if not isinstance(value, cls):
        raise SettingError(name, value, f"a {cls.__name__}")


# ---- settings --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AgentSettings:
    """Settings every hyperparameter agent understands (an agent's ``Settings`` subclass adds its own).

    Attributes:
        max_factor: the agent's knobs stay within ``[base / max_factor, base * max_factor]`` of nnU-Net's
            value (> 1).
        max_step: largest change of a knob's log-multiplier in one decision (rate limit; > 0).
        priority: used by the ``priority`` conflict strategy (an integer; higher wins).
        share: weight of the shared reward in [0, 1]; ``1 - share`` goes to the agent's specialised term.
    """

    max_factor: float = setting(2.0, Rule("number", gt=1))
    max_step: float = setting(0.25, Rule("number", gt=0))
    priority: int = setting(0, Rule("int"))
    share: float = setting(0.7, Rule("number", ge=0, le=1))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class SafeguardConfig:
    """Rollback, trust and penalties (the ``safeguards`` section).

    Attributes:
        rollback: restore network and optimizer to the last good epoch when triggered.
        rollback_dice_drop: trigger when the pseudo-Dice EMA falls this far below its best (> 0).
        max_consecutive_rollbacks: after this many (>= 1), the agents are switched off (nnU-Net defaults).
        trust: agents start with narrowed bounds and earn wider ones with a positive record.
        trust_init: starting trust, in [trust_min, 1].
        trust_min: lowest trust, in (0, 1].
        trust_step: trust gained or lost per judgement (>= 0).
        trust_window: epochs per judgement (>= 1).
        nan_penalty: reward for an epoch with a non-finite loss (after normalisation, in z units; <= 0).
        rollback_penalty: reward for an action that led to a rollback (<= 0).
        explode_factor: an epoch whose max gradient norm exceeds this multiple (> 1) of the running median
            is penalised.
        explode_penalty: that penalty, in z units (<= 0).
        prior_weight: penalty per unit squared log-multiplier, pulling agents towards nnU-Net's values (>= 0).
    """

    rollback: bool = setting(True, Rule("bool"))
    rollback_dice_drop: float = setting(0.1, Rule("number", gt=0))
    max_consecutive_rollbacks: int = setting(3, Rule("int", ge=1))
    trust: bool = setting(True, Rule("bool"))
    trust_init: float = setting(0.5, Rule("number"))  # in [trust_min, 1]: checked in __post_init__
    trust_min: float = setting(0.25, Rule("number", gt=0, le=1))
    trust_step: float = setting(0.05, Rule("number", ge=0))
    trust_window: int = setting(5, Rule("int", ge=1))
    nan_penalty: float = setting(-5.0, Rule("number", le=0))
    rollback_penalty: float = setting(-5.0, Rule("number", le=0))
    explode_factor: float = setting(10.0, Rule("number", gt=1))
    explode_penalty: float = setting(-2.0, Rule("number", le=0))
    prior_weight: float = setting(0.5, Rule("number", ge=0))

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.trust_min <= self.trust_init <= 1:
            raise SettingError("trust_init", self.trust_init, f"in [trust_min, 1] = [{_fmt(self.trust_min)}, 1]")


@dataclass(frozen=True)
class ExplorationConfig:
    """Explore, then exploit, then fine-tune, by training progress (epoch / num_epochs).

    Before ``explore_until`` actions are sampled at full noise; before ``exploit_until`` at
    ``exploit_noise``; after that the agents act deterministically (the policy mean). The SAC
    target entropy is annealed linearly from ``-act_dim * entropy_start`` to ``-act_dim * entropy_end``.

    Attributes:
        explore_until: end of the exploration phase, a fraction of training in [0, 1].
        exploit_until: end of the exploitation phase, in [explore_until, 1].
        exploit_noise: noise scale while exploiting (>= 0; 1 is full noise).
        entropy_start, entropy_end: the target entropy's factors (finite numbers).
    """

    explore_until: float = setting(0.3, Rule("number", ge=0, le=1))
    exploit_until: float = setting(0.8, Rule("number", ge=0, le=1))
    exploit_noise: float = setting(0.5, Rule("number", ge=0))
    entropy_start: float = setting(1.0, Rule("number"))
    entropy_end: float = setting(2.0, Rule("number"))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.exploit_until < self.explore_until:
            raise SettingError("exploit_until", self.exploit_until,
                               f"in [explore_until, 1] = [{_fmt(self.explore_until)}, 1]")


@dataclass(frozen=True)
class LearningConfig:
    """How the agents' SAC learners are trained from the one-transition-per-epoch stream.

    ``gradient_steps`` SAC updates follow each epoch's transition; the six agents' k-th updates run as
    one batched computation (``agents.base.learn_together``). They are most of the agents' time; the
    measured cost and the benchmark of 4 against 8 steps are in ``docs/overhead.md`` and
    ``docs/benchmarks.md``.

    Attributes:
        hidden: the actor's and critics' hidden layer widths (a non-empty list of integers >= 1).
        gamma: discount factor, in [0, 1).
        lr: learning rate of actor, critics and temperature (> 0).
        batch_size: transitions per SAC update (>= 1).
        gradient_steps: SAC updates after each epoch's transition (>= 0; 0: the agents do not learn).
        learning_starts: transitions in the buffer before the first update (>= 1).
        buffer_size: replay buffer capacity (>= 1).
        prioritized: prioritised replay instead of uniform.
        init_log_std: the policy's initial log standard deviation (a finite number).
    """

    hidden: tuple[int, ...] = setting((64, 64), Rule("ints", ge=1))
    gamma: float = setting(0.9, Rule("number", ge=0, lt=1))
    lr: float = setting(1e-3, Rule("number", gt=0))
    batch_size: int = setting(32, Rule("int", ge=1))
    gradient_steps: int = setting(8, Rule("int", ge=0))
    learning_starts: int = setting(4, Rule("int", ge=1))
    buffer_size: int = setting(10_000, Rule("int", ge=1))
    prioritized: bool = setting(True, Rule("bool"))
    init_log_std: float = setting(-1.2, Rule("number"))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class NNUNetSettings:
    """nnU-Net's own hyperparameters for one run; null keeps nnU-Net's value (its plans, its trainer).

    The search (``hypera-nnunet search``) writes one such section per trial; ``nnUNetTrainerConfigured`` (nnU-Net
    without agents) and every HYPERA trainer read it from ``$HYPERA_CONFIG``. HYPERA's knobs act on these values as
    they act on nnU-Net's (a knob's multiplier 1 is this section's value).

    Attributes:
        initial_lr: SGD's initial learning rate (nnU-Net: 1e-2), the start of the poly schedule.
        weight_decay: SGD's weight decay (nnU-Net: 3e-5).
        momentum: SGD's momentum in [0, 1) (nnU-Net: 0.99, Nesterov).
        ce_weight, dice_weight: the weights of cross-entropy and Dice in nnU-Net's ``DC_and_CE_loss`` (1 and 1).
        aug_prob: multiplies every augmentation's probability (1: nnU-Net's pipeline).
        aug_strength: scales the augmentations' ranges towards identity (< 1) or beyond nnU-Net's (> 1).
        batch_size: replaces the plans' batch size.
        epochs: epochs this run trains (replaces the trainer's ``num_epochs``; the search's fidelity).
        iterations: training iterations per epoch (nnU-Net: 250; validation iterations become
            ``max(2, iterations // 5)``, nnU-Net's 250:50 ratio).
        schedule_epochs: epochs the poly learning-rate schedule spans (at least ``epochs``; null: ``epochs``). The
            search pins it to its largest budget, so that a short trial is a prefix of a long one and a promoted
            trial continues from its checkpoint (as Auto-nnU-Net does).
        poly_exponent: the poly schedule's exponent (nnU-Net: 0.9).
        warmup_epochs: the first N epochs' learning rate ramps up linearly, ``(e + 1) / (N + 1)`` of the poly
            value (null or 0: none).
        ce_weight_late: the cross-entropy weight at the last epoch; it moves linearly from ``ce_weight`` (or 1) at
            epoch 0 (null: constant).
        stop_patience: stop early when the EMA pseudo-Dice has not risen by more than ``stop_min_delta`` above
            its earlier best for this many epochs; the final checkpoint and nnU-Net's validation follow, and
            ``fold_X/early_stop.json`` says how much of the budget was left (null: never).
        stop_min_delta: the rise that counts (default 0 when ``stop_patience`` is set).
    """

    initial_lr: float | None = setting(None, Rule("number", gt=0, optional=True))
    weight_decay: float | None = setting(None, Rule("number", ge=0, optional=True))
    momentum: float | None = setting(None, Rule("number", ge=0, lt=1, optional=True))
    ce_weight: float | None = setting(None, Rule("number", ge=0, optional=True))
    dice_weight: float | None = setting(None, Rule("number", ge=0, optional=True))
    aug_prob: float | None = setting(None, Rule("number", ge=0, optional=True))
    aug_strength: float | None = setting(None, Rule("number", gt=0, optional=True))
    batch_size: int | None = setting(None, Rule("int", ge=1, optional=True))
    epochs: int | None = setting(None, Rule("int", ge=1, optional=True))
    iterations: int | None = setting(None, Rule("int", ge=1, optional=True))
    schedule_epochs: int | None = setting(None, Rule("int", ge=1, optional=True))
    poly_exponent: float | None = setting(None, Rule("number", gt=0, optional=True))
    warmup_epochs: int | None = setting(None, Rule("int", ge=0, optional=True))
    ce_weight_late: float | None = setting(None, Rule("number", ge=0, optional=True))
    stop_patience: int | None = setting(None, Rule("int", ge=1, optional=True))
    stop_min_delta: float | None = setting(None, Rule("number", ge=0, optional=True))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.ce_weight == 0 and self.dice_weight == 0:
            raise SettingError("dice_weight", 0, "a positive number when ce_weight is 0 (no loss left)")
        if self.epochs is not None and self.schedule_epochs is not None and self.schedule_epochs < self.epochs:
            raise SettingError("schedule_epochs", self.schedule_epochs, f"at least epochs ({self.epochs}): the "
                               "poly schedule reaches 0 at schedule_epochs")


@dataclass(frozen=True)
class TransferConfig:
    """Start from policies saved by an earlier run (``fold_X/hypera/policies.pt``).

    Attributes:
        source: that ``policies.pt`` or its ``fold_X`` folder, or an experience store whose ``policies.pt``
            ``hypera-nnunet agents train`` wrote (``warm_start`` then also fills the replay buffers with the store's
            transitions); null: no transfer.
        mode: ``warm_start`` (continue learning) or ``frozen`` (act only; needs ``source`` to run).
    """

    source: str | None = setting(None, Rule("text", optional=True))
    mode: str = setting("warm_start", Rule("text", choices=TRANSFER_MODES))

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class RewardConfig:
    """What the shared reward compares the run with (the ``reward`` section).

    Attributes:
        counterfactual: reward an epoch by the change of the run's pseudo-Dice EMA minus the change of a seeded
            ``nnUNetTrainer`` run's EMA at the same epoch (the experience store's baseline of the same dataset,
            plans, configuration, budget, fold and seed; else the mean of its baselines that differ in fold or
            seed, said in ``decisions.jsonl``; else the plain change). False: the plain change.
        terminal_weight: at the last epoch, add this times (the run's EMA minus the reference's) to the shared
            term before normalisation (>= 0; counterfactual only).
    """

    counterfactual: bool = setting(False, Rule("bool"))
    terminal_weight: float = setting(0.0, Rule("number", ge=0))

    def __post_init__(self) -> None:
        check_fields(self)


SCHEDULE_OBJECTIVES = ("dice", "advantage")


@dataclass(frozen=True)
class ScheduleConfig:
    """The schedule agent: run-level choices learned across runs (the ``schedule`` section).

    Attributes:
        space: a search-space file (``hypera-nnunet search``'s format; its ``params`` and ``fixed`` are used): each
            run asks the store's study for one point of it before nnU-Net builds its optimizer and loss, trains with
            it, and tells the study its outcome (null: off). Needs a store.
        objective: ``dice`` (nnU-Net's final validation mean foreground Dice) or ``advantage`` (that minus the
            store's seeded baseline of the same fold and seed; runs without one are told nothing).
    """

    space: str | None = setting(None, Rule("text", optional=True))
    objective: str = setting("dice", Rule("text", choices=SCHEDULE_OBJECTIVES))

    def __post_init__(self) -> None:
        check_fields(self)


class Registry(Protocol):
    """What :class:`HyperaConfig` needs from the agent and strategy registries (installed by
    :mod:`hypera_nnunet.config` with :func:`use_registry`)."""

    def parse_agents(self, agents: Any) -> dict[str, AgentSettings]:
        """Each agent's ``Settings`` from a list of names or a mapping name -> settings (None: not run)."""

    def strategy_names(self) -> tuple[str, ...]:
        """The registered conflict strategies."""


_registry: Registry | None = None


def use_registry(registry: Registry) -> None:
    """Let :class:`HyperaConfig` parse agent settings and check strategies against ``registry``."""
    global _registry
    _registry = registry


def _agents_without_registry(agents: Any) -> dict[str, AgentSettings]:
    if not isinstance(agents, Mapping):
        raise SettingError("agents", agents, "a mapping of agent name -> settings")
    for name, s in agents.items():
        if not isinstance(s, AgentSettings):
            raise ConfigError(f"'agents.{name}': settings given as {type(s).__name__} need the agent registry; "
                              "build the configuration with hypera_nnunet.config")
    return dict(agents)


@dataclass(frozen=True)
class HyperaConfig:
    """Everything a HYPERA run needs.

    Attributes:
        agents: agent name -> its settings (the agent's ``Settings``; with :mod:`hypera_nnunet.config`
            imported also a mapping, parsed against the agent registry). At least one agent.
        strategy: conflict resolution when several agents propose values for one knob (a registered name).
        shadow: decide and log, apply nothing, learn nothing (the control run).
        seed: the agents' own generators are seeded from (seed, fold), never the global RNGs (an integer in
            [0, 2^32 - 1]; ``$HYPERA_SEED``, which also seeds nnU-Net's streams, takes its place when set).
        save_every: write ``checkpoint_latest.pth`` every N >= 1 epochs (None: nnU-Net's 50).
        pause_after_epochs: stop this process after N >= 1 epochs, leaving a checkpoint that
            ``nnUNetv2_train ... --c`` resumes (for job time limits; None: never).
        pause_after_minutes: time budget (> 0): stop when the next epoch would end after this many
            minutes (None: no budget).
        tensorboard: also write each epoch's knob multipliers, rewards, trust and pseudo-Dice as TensorBoard
            scalars to ``fold_X/hypera/tensorboard`` (needs ``pip install 'hypera-nnunet[tensorboard]'``).
        store: the experience store's folder (:mod:`hypera_nnunet.store`): each run appends its transitions and
            outcome, and the counterfactual reward reads its baselines (None: ``$HYPERA_STORE``, else none).
        nnunet: nnU-Net's own hyperparameters (:class:`NNUNetSettings`; all null: nnU-Net's).
        safeguards, exploration, learning, transfer, reward, schedule: the sections above.
    """

    agents: dict[str, Any] = field(default_factory=lambda: {"learning_rate": {}, "loss": {}})
    strategy: str = setting("weighted_average", Rule("text"))
    shadow: bool = setting(False, Rule("bool"))
    seed: int = setting(0, Rule("int", ge=0, le=2**32 - 1))
    save_every: int | None = setting(None, Rule("int", ge=1, optional=True))
    pause_after_epochs: int | None = setting(None, Rule("int", ge=1, optional=True))
    pause_after_minutes: float | None = setting(None, Rule("number", gt=0, optional=True))
    tensorboard: bool = setting(False, Rule("bool"))
    store: str | None = setting(None, Rule("text", optional=True))
    safeguards: SafeguardConfig = SafeguardConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    learning: LearningConfig = LearningConfig()
    transfer: TransferConfig = TransferConfig()
    nnunet: NNUNetSettings = NNUNetSettings()
    reward: RewardConfig = RewardConfig()
    schedule: ScheduleConfig = ScheduleConfig()

    def __post_init__(self) -> None:
        check_fields(self)
        for name, cls in (("safeguards", SafeguardConfig), ("exploration", ExplorationConfig),
                          ("learning", LearningConfig), ("transfer", TransferConfig), ("nnunet", NNUNetSettings),
                          ("reward", RewardConfig), ("schedule", ScheduleConfig)):
            _section(self, name, cls)
        if _registry is not None:
            names = _registry.strategy_names()
            if self.strategy not in names:
                raise ConfigError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(names)}")
            agents = _registry.parse_agents(self.agents)
        else:
            agents = _agents_without_registry(self.agents)
        if not agents:
            raise SettingError("agents", self.agents, "at least one agent")
        object.__setattr__(self, "agents", agents)

    def replace(self, **changes) -> HyperaConfig:
        """A copy with ``changes`` (checked like a new configuration)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain JSON types (lists for tuples); ``config_from_dict(cfg.to_dict()) == cfg``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))
