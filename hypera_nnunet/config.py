"""HYPERA configuration: frozen dataclasses, loadable from JSON or YAML without writing code.

A file named by the ``HYPERA_CONFIG`` environment variable (or a trainer variant's built-in config)
selects the agents, their bounds, the conflict strategy, the safeguards, transfer and the seed::

    {"agents": {"learning_rate": {"max_factor": 2.0}, "loss": {}},
     "strategy": "weighted_average", "seed": 0,
     "safeguards": {"rollback_dice_drop": 0.1},
     "transfer": {"source": "/path/to/fold_0/hypera/policies.pt", "mode": "frozen"}}

Unknown keys are errors that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypera_nnunet.errors import ConfigError

CONFIG_ENV = "HYPERA_CONFIG"
STRATEGIES = ("weighted_average", "priority", "consensus")
TRANSFER_MODES = ("warm_start", "frozen")


@dataclass(frozen=True)
class AgentSettings:
    """Settings every hyperparameter agent understands.

    Attributes:
        max_factor: the agent's knobs stay within ``[base / max_factor, base * max_factor]`` of nnU-Net's value.
        max_step: largest change of a knob's log-multiplier in one decision (rate limit).
        priority: used by the ``priority`` conflict strategy (higher wins).
        share: weight of the shared reward; ``1 - share`` goes to the agent's specialised term.
    """

    max_factor: float = 2.0
    max_step: float = 0.25
    priority: int = 0
    share: float = 0.7


@dataclass(frozen=True)
class SafeguardConfig:
    """Rollback, trust and penalties.

    Attributes:
        rollback: restore network and optimizer to the last good epoch when triggered.
        rollback_dice_drop: trigger when the pseudo-Dice EMA falls this far below its best.
        max_consecutive_rollbacks: after this many, the agents are switched off (nnU-Net defaults).
        trust: agents start with narrowed bounds and earn wider ones with a positive record.
        trust_init, trust_min, trust_step, trust_window: the trust schedule.
        nan_penalty: reward for an epoch with a non-finite loss (after normalisation, in z units).
        rollback_penalty: reward for an action that led to a rollback.
        explode_factor: an epoch whose max gradient norm exceeds this multiple of the running median is penalised.
        explode_penalty: that penalty, in z units.
        prior_weight: penalty per unit squared log-multiplier, pulling agents towards nnU-Net's values.
    """

    rollback: bool = True
    rollback_dice_drop: float = 0.1
    max_consecutive_rollbacks: int = 3
    trust: bool = True
    trust_init: float = 0.5
    trust_min: float = 0.25
    trust_step: float = 0.05
    trust_window: int = 5
    nan_penalty: float = -5.0
    rollback_penalty: float = -5.0
    explode_factor: float = 10.0
    explode_penalty: float = -2.0
    prior_weight: float = 0.5


@dataclass(frozen=True)
class ExplorationConfig:
    """Explore, then exploit, then fine-tune, by training progress (epoch / num_epochs).

    Before ``explore_until`` actions are sampled at full noise; before ``exploit_until`` at
    ``exploit_noise``; after that the agents act deterministically (the policy mean). The SAC
    target entropy is annealed linearly from ``-act_dim * entropy_start`` to ``-act_dim * entropy_end``.
    """

    explore_until: float = 0.3
    exploit_until: float = 0.8
    exploit_noise: float = 0.5
    entropy_start: float = 1.0
    entropy_end: float = 2.0


@dataclass(frozen=True)
class LearningConfig:
    """How the agents' SAC learners are trained from the one-transition-per-epoch stream.

    ``gradient_steps`` SAC updates follow each epoch's transition; the six agents' k-th updates run as one
    batched computation (``agents.base.learn_together``). They are most of the agents' time: with 8, HYPERA
    costs 0.85% of a 25-iteration CPU epoch of the benchmark protocol (about a tenth of that at nnU-Net's
    250-iteration epochs). In the benchmark (``docs/benchmarks.md``, protocol ``cpu-v2``) neither 8 steps
    (15 runs, -0.026 mean foreground Dice per run against nnU-Net's trainer) nor 4 steps (10 runs, -0.013)
    differed from nnU-Net's trainer beyond the protocol's noise; 8 stays the default.
    """

    hidden: tuple[int, ...] = (64, 64)
    gamma: float = 0.9
    lr: float = 1e-3
    batch_size: int = 32
    gradient_steps: int = 8
    learning_starts: int = 4
    buffer_size: int = 10_000
    prioritized: bool = True
    init_log_std: float = -1.2


@dataclass(frozen=True)
class TransferConfig:
    """Start from policies saved by an earlier run (``fold_X/hypera/policies.pt``)."""

    source: str | None = None
    mode: str = "warm_start"


@dataclass(frozen=True)
class HyperaConfig:
    """Everything a HYPERA run needs.

    Attributes:
        agents: agent name -> its settings (a mapping or the agent's ``Settings`` dataclass).
        strategy: conflict resolution when several agents propose values for one knob.
        shadow: decide and log, apply nothing, learn nothing (the control run).
        seed: seeds every agent's own generators (never the global RNGs).
        save_every: write ``checkpoint_latest.pth`` every N epochs (None: nnU-Net's 50).
        pause_after_epochs: stop this process after N epochs, leaving a checkpoint that
            ``nnUNetv2_train ... --c`` resumes (for job time limits).
        pause_after_minutes: time budget: stop when the next epoch would end after this many minutes.
    """

    agents: dict[str, Any] = field(default_factory=lambda: {"learning_rate": {}, "loss": {}})
    strategy: str = "weighted_average"
    shadow: bool = False
    seed: int = 0
    save_every: int | None = None
    pause_after_epochs: int | None = None
    pause_after_minutes: float | None = None
    safeguards: SafeguardConfig = SafeguardConfig()
    exploration: ExplorationConfig = ExplorationConfig()
    learning: LearningConfig = LearningConfig()
    transfer: TransferConfig = TransferConfig()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy '{self.strategy}'; choose one of {', '.join(STRATEGIES)}")
        if self.transfer.mode not in TRANSFER_MODES:
            raise ConfigError(f"unknown transfer.mode '{self.transfer.mode}'; "
                              f"choose one of {', '.join(TRANSFER_MODES)}")
        if self.transfer.mode == "frozen" and not self.transfer.source:
            raise ConfigError("transfer.mode 'frozen' needs transfer.source (a policies.pt from an earlier run)")
        from hypera_nnunet.agents import AGENTS

        parsed = {}
        for name, settings in self.agents.items():
            if name not in AGENTS:
                raise ConfigError(f"unknown agent '{name}'; available: {', '.join(sorted(AGENTS))}")
            cls = AGENTS[name].Settings
            if isinstance(settings, cls):
                parsed[name] = settings
            else:
                parsed[name] = _build(cls, settings or {}, f"agents.{name}")
        object.__setattr__(self, "agents", parsed)

    def replace(self, **changes) -> HyperaConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(repr(where + '.' + u) for u in unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    kwargs = {}
    for k, v in values.items():
        default = getattr(cls(), k) if k != "agents" else None
        if dataclasses.is_dataclass(default):
            v = _build(type(default), v, f"{where}.{k}" if where else k)
        elif isinstance(default, tuple) and isinstance(v, list):
            v = tuple(v)
        elif isinstance(default, bool) and not isinstance(v, bool):
            raise ConfigError(f"setting '{where}.{k}' must be true or false, got {v!r}")
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"setting '{where}.{k}' must be a number, got {v!r}")
        kwargs[k] = v
    return cls(**kwargs)


def config_from_dict(values: dict, source: str = "<dict>") -> HyperaConfig:
    try:
        return _build(HyperaConfig, values, "")
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}".replace("'.", "'")) from None
    except TypeError as e:
        raise ConfigError(f"{source}: {e}") from None


def load_config(path: str | os.PathLike) -> HyperaConfig:
    """Read a JSON (``.json``) or YAML (``.yaml``/``.yml``) HYPERA config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"HYPERA config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one message naming the file
        raise ConfigError(f"HYPERA config file {p} could not be parsed: {e}") from None
    return config_from_dict(values, str(p))


def config_from_env(default: HyperaConfig) -> HyperaConfig:
    """``HYPERA_CONFIG`` if set, else the trainer variant's ``default``."""
    path = os.environ.get(CONFIG_ENV)
    return load_config(path) if path else default
