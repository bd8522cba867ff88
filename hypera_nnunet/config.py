"""HYPERA configuration: read a file, merge it onto the trainer variant's, check it against the registries.

The settings themselves (frozen dataclasses, each field's range) are in :mod:`hypera_nnunet.settings`
and re-exported here. A trainer variant's configuration is :data:`~.nnunet.variant_table.BASE_CONFIG`
with the variant's overrides merged on top; a file named by ``HYPERA_CONFIG`` is merged on top of that
(:func:`run_config`), with one rule everywhere (:func:`merge_config`)::

    learning: {gradient_steps: 4}                 # on HyperaTrainer: six agents, 4 gradient steps
    agents: [learning_rate, loss]                 # a list replaces the set of agents (default settings)
    agents: {learning_rate: {max_factor: 3}}      # a mapping merges per agent; the others stay
    agents: {loss: null}                          # null removes an agent

Unknown keys, wrong types and values out of range are errors that name the file, the dotted key, the
value and the allowed range, raised when the configuration is read (before nnU-Net loads any data).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hypera_nnunet.control.strategies import STRATEGIES
from hypera_nnunet.errors import ConfigError
from hypera_nnunet.nnunet import variant_table
from hypera_nnunet.settings import (
    TRANSFER_MODES,
    AgentSettings,
    ExplorationConfig,
    HyperaConfig,
    LearningConfig,
    SafeguardConfig,
    SettingError,
    TransferConfig,
    show,
    use_registry,
)

CONFIG_ENV = "HYPERA_CONFIG"

__all__ = ["CONFIG_ENV", "TRANSFER_MODES", "AgentSettings", "ExplorationConfig", "HyperaConfig", "LearningConfig",
           "SafeguardConfig", "TransferConfig", "changed_settings", "config_from_dict", "config_from_env",
           "flat_settings", "load_config", "merge_config", "read_config_file", "run_config", "strategy_names",
           "variant_config"]


# ---- registries ------------------------------------------------------------------------------------
def strategy_names() -> tuple[str, ...]:
    """The conflict strategies a configuration may name (the registry in :mod:`.control.strategies`)."""
    return tuple(STRATEGIES)


def _agent_names(agents: list | tuple) -> dict[str, dict]:
    if not all(isinstance(n, str) for n in agents):
        raise SettingError("agents", agents, "a list of agent names or a mapping of agent name -> settings")
    seen: set[str] = set()
    for n in agents:
        if n in seen:
            raise ConfigError(f"'agents' lists '{n}' twice")
        seen.add(n)
    return {n: {} for n in agents}


def _parse_agents(agents: Any) -> dict[str, AgentSettings]:
    """Each agent's ``Settings`` from a list of names or a mapping name -> settings (None: not run)."""
    from hypera_nnunet.agents import AGENTS

    if isinstance(agents, (list, tuple)):
        agents = _agent_names(agents)
    elif not isinstance(agents, Mapping):
        raise SettingError("agents", agents, "a list of agent names or a mapping of agent name -> settings")
    parsed = {}
    for name, values in agents.items():
        if values is None:
            continue
        if name not in AGENTS:
            raise ConfigError(f"unknown agent {show(name)}; available: {', '.join(sorted(AGENTS))}")
        cls = AGENTS[name].Settings
        if isinstance(values, cls):
            parsed[name] = values
        elif type(values) is AgentSettings:  # the common settings only: the agent's own take their defaults
            parsed[name] = _build(cls, dataclasses.asdict(values), f"agents.{name}")
        else:
            parsed[name] = _build(cls, values, f"agents.{name}")
    return parsed


class _Registry:
    """The agent and strategy registries, as :class:`~hypera_nnunet.settings.HyperaConfig` sees them."""

    def parse_agents(self, agents: Any) -> dict[str, AgentSettings]:
        return _parse_agents(agents)

    def strategy_names(self) -> tuple[str, ...]:
        return strategy_names()


# TODO(lead): once every HyperaConfig(agents={name: {...}}) call site builds through config_from_dict or
# variant_config, HyperaConfig can require Settings objects and this hook can go.
use_registry(_Registry())


# ---- building and checking -------------------------------------------------------------------------
def _key(where: str, name: Any) -> str:
    return f"{where}.{name}" if where else str(name)


def _build(cls: type, values: Any, where: str):
    """``cls`` from a mapping, nested settings sections included; errors carry the dotted key."""
    if not isinstance(values, Mapping):
        if not where:
            raise ConfigError("the configuration must be a mapping of settings (agents, strategy, ...), "
                              f"got {type(values).__name__}")
        raise ConfigError(f"'{where}' must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in values if k not in fields), key=str)
    if unknown:
        raise ConfigError(f"unknown setting(s) {', '.join(repr(_key(where, u)) for u in unknown)}; "
                          f"known: {', '.join(sorted(fields))}")
    kwargs = {}
    for k, v in values.items():
        default = fields[k].default
        kwargs[k] = _build(type(default), v, _key(where, k)) if dataclasses.is_dataclass(default) else v
    try:
        return cls(**kwargs)
    except SettingError as e:
        raise e.within(where) from None


def _check_runnable(cfg: HyperaConfig) -> None:
    if cfg.transfer.mode == "frozen" and not cfg.transfer.source:
        raise ConfigError("transfer.mode 'frozen' needs transfer.source (a policies.pt from an earlier run)")


def config_from_dict(values: Mapping, source: str = "<dict>", for_run: bool = True) -> HyperaConfig:
    """A checked configuration from plain values (the format of ``to_dict()`` and ``hypera/config.json``).

    Missing keys take the settings' defaults; ``agents`` (a list of names, or a mapping name -> settings
    with null for "not run") names exactly the agents that run. No merge: see :func:`load_config`.

    :param values: the configuration as nested mappings.
    :param source: named in errors (a file, or a trainer variant).
    :param for_run: also require what a run needs (``transfer.mode: frozen`` needs ``transfer.source``).
    :raises ConfigError: one line naming ``source``, the key, the value and what is allowed.
    """
    try:
        cfg = _build(HyperaConfig, values, "")
        if for_run:
            _check_runnable(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


# ---- merging -----------------------------------------------------------------------------------------
def _merge_value(base: Any, override: Any) -> Any:
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = _merge_value(merged.get(k), v)
        return merged
    return copy.deepcopy(override)


def _agents_as_mapping(agents: Any) -> dict | None:
    if isinstance(agents, Mapping):
        return dict(agents)
    if isinstance(agents, (list, tuple)) and all(isinstance(n, str) for n in agents):
        return {n: {} for n in agents}
    return None


def _merge_agents(base: Any, override: Any) -> Any:
    current = _agents_as_mapping(base)
    if not isinstance(override, Mapping) or current is None:
        return copy.deepcopy(override)
    for name, values in override.items():
        if values is None:
            current.pop(name, None)
        else:
            current[name] = _merge_value(current.get(name), values)
    return current


def merge_config(base: Mapping, override: Mapping) -> dict:
    """``override`` merged onto ``base`` (neither is changed): the one merge rule of HYPERA configurations.

    A mapping merges key by key; anything else (a list, a number, null) replaces. Under ``agents`` a list
    of names replaces the set of agents (each with default settings), a mapping merges per agent (new
    agents are added after the others), and ``name: null`` removes that agent.

    :param base: the configuration merged onto (e.g. a variant's, or ``HyperaConfig.to_dict()``).
    :param override: the values that win (e.g. a ``HYPERA_CONFIG`` file).
    """
    merged = copy.deepcopy(dict(base))
    for k, v in override.items():
        merged[k] = _merge_agents(merged.get(k), v) if k == "agents" else _merge_value(merged.get(k), v)
    return merged


# ---- files -----------------------------------------------------------------------------------------
def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def read_config_file(path: str | os.PathLike) -> dict:
    """The values of a JSON (``.json``) or YAML (``.yaml``/``.yml``) file: a mapping, not yet checked.

    :raises ConfigError: the file is missing, unreadable, unparsable or not a mapping (one line naming it).
    """
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"HYPERA config file {p} does not exist")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"HYPERA config file {p} could not be read: {_one_line(e)}") from None
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
            values = {} if values is None else values
        else:
            values = json.loads(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes one message naming the file
        raise ConfigError(f"HYPERA config file {p} could not be parsed: {_one_line(e)}") from None
    if not isinstance(values, Mapping):
        raise ConfigError(f"{p}: the configuration must be a mapping of settings (agents, strategy, ...), "
                          f"got {type(values).__name__}")
    return dict(values)


def _as_values(base: HyperaConfig | Mapping) -> dict:
    return base.to_dict() if isinstance(base, HyperaConfig) else dict(base)


def load_config(path: str | os.PathLike, base: HyperaConfig | Mapping | None = None,
                for_run: bool = True) -> HyperaConfig:
    """A config file, merged onto ``base``.

    :param path: a JSON (``.json``) or YAML (``.yaml``/``.yml``) file.
    :param base: the configuration the file overrides (:func:`merge_config`); None: the file on its own
        (the settings' defaults for what it leaves out, exactly the agents it names).
    :param for_run: also require what a run needs (see :func:`config_from_dict`).
    :raises ConfigError: one line naming the file.
    """
    values = read_config_file(path)
    if base is not None:
        values = merge_config(_as_values(base), values)
    return config_from_dict(values, str(path), for_run=for_run)


def config_from_env(default: HyperaConfig) -> HyperaConfig:
    """``default`` (the trainer variant's configuration) with the ``HYPERA_CONFIG`` file merged on top, if set.

    :param default: returned unchanged when ``HYPERA_CONFIG`` is not set.
    """
    path = os.environ.get(CONFIG_ENV)
    return load_config(path, default) if path else default


# ---- trainer variants --------------------------------------------------------------------------------
def _variant(trainer_name: str) -> variant_table.Variant:
    name = variant_table.hypera_variant_of(trainer_name)
    if name is None:
        raise ConfigError(f"'{trainer_name}' is not a HYPERA trainer, so it has no HYPERA configuration "
                          "(`hypera-nnunet trainers` lists them)")
    return variant_table.VARIANTS[name]


def _variant_values(trainer_name: str) -> dict:
    """``BASE_CONFIG`` + the variant's overrides (+ the transfer mode, and ``$HYPERA_TRANSFER`` if set)."""
    v = _variant(trainer_name)
    values = merge_config(merge_config({}, variant_table.BASE_CONFIG), v.overrides)
    if v.transfer_mode:
        source = os.environ.get(variant_table.TRANSFER_ENV) or None
        values = merge_config(values, {"transfer": {"mode": v.transfer_mode, "source": source}})
    return values


def _require_transfer_source(trainer_name: str, cfg: HyperaConfig) -> None:
    if _variant(trainer_name).transfer_mode and not cfg.transfer.source:
        raise ConfigError(f"{trainer_name} needs {variant_table.TRANSFER_ENV}=/path/to/fold_X (or its "
                          "hypera/policies.pt) from an earlier HYPERA run.")


def variant_config(trainer_name: str, for_run: bool = True) -> HyperaConfig:
    """A HYPERA trainer's built-in configuration (no ``HYPERA_CONFIG``).

    :param trainer_name: a HYPERA trainer, budgets included (``HyperaTrainer_Shadow_10epochs_25iters``).
    :param for_run: the transfer variants then need ``$HYPERA_TRANSFER``; with False their source is
        ``$HYPERA_TRANSFER`` if set, else None (for listing and checking).
    :raises ConfigError: not a HYPERA trainer, or ``HYPERA_TRANSFER`` missing for a run.
    """
    cfg = config_from_dict(_variant_values(trainer_name), f"trainer {trainer_name}", for_run=False)
    if for_run:
        _require_transfer_source(trainer_name, cfg)
    return cfg


def run_config(trainer_name: str, config_file: str | os.PathLike | None = None) -> HyperaConfig:
    """The configuration a run of ``trainer_name`` uses: the variant's, with the config file merged on top.

    :param trainer_name: a HYPERA trainer name (budgets included).
    :param config_file: the file merged on top (None: ``$HYPERA_CONFIG`` if set, else none).
    :raises ConfigError: one line naming the file (or ``HYPERA_TRANSFER`` for a transfer variant without
        a policy source).
    """
    path = config_file if config_file is not None else os.environ.get(CONFIG_ENV) or None
    values, source = _variant_values(trainer_name), f"trainer {trainer_name}"
    if path is not None:
        values, source = merge_config(values, read_config_file(path)), str(path)
    cfg = config_from_dict(values, source, for_run=False)
    _require_transfer_source(trainer_name, cfg)
    try:
        _check_runnable(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


# ---- reporting ---------------------------------------------------------------------------------------
def flat_settings(cfg: HyperaConfig) -> dict[str, Any]:
    """Every setting by dotted key (``learning.gradient_steps``, ``agents.loss.max_factor``), JSON values."""
    out: dict[str, Any] = {}
    for k, v in cfg.to_dict().items():
        if k == "agents":
            out.update({f"agents.{a}.{f}": x for a, s in v.items() for f, x in s.items()})
        elif isinstance(v, dict):
            out.update({f"{k}.{f}": x for f, x in v.items()})
        else:
            out[k] = v
    return out


def changed_settings(cfg: HyperaConfig) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value, default) for each setting of ``cfg`` that differs from the settings' defaults
    (an agent's defaults are its ``Settings`` defaults; which agents run is not a setting here)."""
    defaults = flat_settings(config_from_dict({"agents": list(cfg.agents)}, for_run=False))
    return {k: (v, defaults[k]) for k, v in flat_settings(cfg).items() if v != defaults[k]}
