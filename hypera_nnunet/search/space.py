"""The search space file of ``hypera-nnunet search``: what a trial trains, and which settings it varies.

A YAML (or JSON) file::

    objective: nnunet                  # nnunet (default): a trial is an nnU-Net training; curve: a cheap
                                       # analytic learning curve with the same interface, for tests and demos;
                                       # hartmann: multi-fidelity Hartmann-6 (six params in [0, 1]), for
                                       # comparing search methods over many repeats
    trainer: nnUNetTrainerConfigured   # or a HYPERA trainer (HyperaTrainer, HyperaTrainer_LR, ...): it also
                                       # searches the agents' own settings
    dataset: 4                         # nnU-Net dataset id or name (planned and preprocessed)
    configuration: 2d
    plans: hyperaCPU2dPlans            # plans identifier (default nnUNetPlans)
    fold: 0
    device: cpu                        # cpu or cuda
    seed: 0                            # HYPERA_SEED of every trial: all trials share nnU-Net's random numbers
    fidelity:                          # epochs are the fidelity (Auto-nnU-Net); the poly schedule is pinned to
      min_epochs: 5                    # max_epochs, so a trial stopped at e epochs is a prefix of a full one
      max_epochs: 40
      iterations: 25                   # training iterations per epoch
    fixed:                             # a HYPERA configuration merged into every trial (optional)
      save_every: 1
    params:                            # dotted setting -> distribution
      nnunet.initial_lr: {low: 0.003, high: 0.03, log: true}
      nnunet.momentum: {low: 0.9, high: 0.99}
      nnunet.batch_size: {type: int, low: 16, high: 48, step: 16}
      learning.gradient_steps: {choices: [2, 4, 8]}

A distribution is ``{low, high}`` (a float; ``log: true`` for a log scale, ``step`` for a grid), ``{type: int,
low, high}`` (``step``, ``log``), or ``{choices: [...]}``. Every parameter is a HYPERA setting (``nnunet.*`` are
nnU-Net's own hyperparameters, :class:`hypera_nnunet.settings.NNUNetSettings`); the file is checked by building the
trial configuration at both ends of every range and at every choice, so a typo or a range outside what a setting
accepts is one error naming the file and the key, before any training.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypera_nnunet.errors import ConfigError

OBJECTIVES = ("nnunet", "curve", "hartmann")
TOP_KEYS = ("objective", "trainer", "dataset", "configuration", "plans", "fold", "device", "seed", "fidelity", "fixed",
            "params")
FIDELITY_KEYS = ("min_epochs", "max_epochs", "iterations")
FLOAT_KEYS = ("type", "low", "high", "log", "step")
CHOICE_KEYS = ("choices",)
#: settings the search itself sets on every trial (the fidelity): a space may not vary or fix them
RESERVED = ("nnunet.epochs", "nnunet.schedule_epochs", "nnunet.iterations", "seed")


@dataclass(frozen=True)
class Param:
    """One searched setting.

    :param key: the dotted HYPERA setting (``nnunet.initial_lr``).
    :param kind: ``float``, ``int`` or ``categorical``.
    :param low, high: the range (``float``/``int``).
    :param log: log scale.
    :param step: grid step (None: continuous).
    :param choices: the values (``categorical``).
    """

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def distribution(self):
        """The Optuna distribution."""
        import optuna

        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(list(self.choices))
        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log,
                                                        step=int(self.step or 1))
        return optuna.distributions.FloatDistribution(float(self.low), float(self.high), log=self.log, step=self.step)

    def suggest(self, trial):
        """This parameter's value for an Optuna ``trial`` (its public ``suggest_*`` API)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def corners(self) -> list:
        """The values the file is checked at: both ends of a range, every choice."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """A checked search space file (see the module docstring for the format)."""

    path: str
    objective: str
    trainer: str
    dataset: str
    configuration: str
    plans: str
    fold: int
    device: str
    seed: int
    min_epochs: int
    max_epochs: int
    iterations: int | None
    fixed: dict = field(default_factory=dict)
    params: tuple[Param, ...] = ()

    def trial_config(self, values: Mapping[str, Any], epochs: int | None = None) -> dict:
        """The HYPERA configuration of one trial: ``fixed``, the sampled ``values`` (dotted keys) and the fidelity
        (``nnunet.epochs``, pinned ``nnunet.schedule_epochs``, ``nnunet.iterations``), as nested mappings."""
        from hypera_nnunet.config import merge_config

        cfg = merge_config({}, self.fixed)
        for key, v in values.items():
            cfg = merge_config(cfg, _nested(key, v))
        fid = {"epochs": epochs or self.max_epochs, "schedule_epochs": self.max_epochs}
        if self.iterations is not None:
            fid["iterations"] = self.iterations
        return merge_config(cfg, {"nnunet": fid, "save_every": cfg.get("save_every", 1)})

    def export_config(self, values: Mapping[str, Any]) -> dict:
        """The configuration of ``values`` without the search's fidelity (epochs, iterations, schedule), so that
        ``nnUNetv2_train`` or a benchmark protocol sets the budget."""
        cfg = self.trial_config(values)
        nn = {k: v for k, v in cfg["nnunet"].items() if k not in ("epochs", "schedule_epochs", "iterations")}
        cfg = {k: v for k, v in cfg.items() if k not in ("nnunet", "save_every")}
        if nn:
            cfg["nnunet"] = nn
        if "save_every" in self.fixed:
            cfg["save_every"] = self.fixed["save_every"]
        return cfg

    def distributions(self) -> dict:
        return {p.key: p.distribution() for p in self.params}


def _nested(dotted: str, value: Any) -> dict:
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def _err(path: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {msg}")


def _number(path: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise _err(path, f"'{key}' must be a finite number, got {v!r}")
    return v


def _int(path: str, key: str, v: Any, lo: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _err(path, f"'{key}' must be an integer, got {v!r}")
    if lo is not None and v < lo:
        raise _err(path, f"'{key}' must be at least {lo}, got {v}")
    return v


def _param(path: str, key: str, spec: Any) -> Param:
    where = f"params.{key}"
    if not isinstance(spec, Mapping):
        raise _err(path, f"'{where}' must be a mapping such as {{low: 0.001, high: 0.1}} or {{choices: [a, b]}}, "
                         f"got {spec!r}")
    if "choices" in spec:
        extra = sorted(k for k in spec if k not in (*CHOICE_KEYS, "type"))
        if extra:
            raise _err(path, f"'{where}' has choices and {extra}: give either choices or a range")
        ch = spec["choices"]
        if not isinstance(ch, list) or not ch:
            raise _err(path, f"'{where}.choices' must be a non-empty list, got {ch!r}")
        bad = [c for c in ch if not (c is None or isinstance(c, (bool, int, float, str)))]
        if bad:
            raise _err(path, f"'{where}.choices' holds {bad[0]!r}: choices are numbers, strings, booleans or null")
        if len(set(map(repr, ch))) != len(ch):
            raise _err(path, f"'{where}.choices' lists a value twice: {ch}")
        return Param(key, "categorical", choices=tuple(ch))
    unknown = sorted(k for k in spec if k not in FLOAT_KEYS)
    if unknown:
        raise _err(path, f"unknown key(s) {unknown} in '{where}'; known: {', '.join(FLOAT_KEYS + CHOICE_KEYS)}")
    kind = spec.get("type", "float")
    if kind not in ("float", "int"):
        raise _err(path, f"'{where}.type' must be float or int (or give choices), got {kind!r}")
    if "low" not in spec or "high" not in spec:
        raise _err(path, f"'{where}' needs low and high (or choices)")
    if kind == "int":
        low, high = _int(path, f"{where}.low", spec["low"]), _int(path, f"{where}.high", spec["high"])
    else:
        low, high = _number(path, f"{where}.low", spec["low"]), _number(path, f"{where}.high", spec["high"])
    if not low < high:
        raise _err(path, f"'{where}': low ({low}) must be below high ({high})")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _err(path, f"'{where}.log' must be true or false, got {log!r}")
    if log and low <= 0:
        raise _err(path, f"'{where}': a log scale needs low > 0, got {low}")
    step = spec.get("step")
    if step is not None:
        step = _int(path, f"{where}.step", step, 1) if kind == "int" else _number(path, f"{where}.step", step)
        if step <= 0:
            raise _err(path, f"'{where}.step' must be positive, got {step}")
        if log:
            raise _err(path, f"'{where}': step and log cannot be combined (Optuna's rule)")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def parse_space(values: Any, path: str = "<space>") -> SearchSpace:
    """A checked :class:`SearchSpace` from the file's values; :class:`ConfigError` names ``path`` and the key."""
    from hypera_nnunet.config import config_from_dict, merge_config
    from hypera_nnunet.config import variant_config as _variant_config
    from hypera_nnunet.nnunet.variant_table import CONFIGURED_BASELINE, hypera_variant_of

    if not isinstance(values, Mapping):
        raise _err(path, f"a search space is a mapping (trainer, dataset, params, ...), got {type(values).__name__}")
    unknown = sorted(str(k) for k in values if k not in TOP_KEYS)
    if unknown:
        raise _err(path, f"unknown key(s) {unknown}; known: {', '.join(TOP_KEYS)}")
    objective = values.get("objective", "nnunet")
    if objective not in OBJECTIVES:
        raise _err(path, f"'objective' must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    for k in ("dataset", "params") if objective == "nnunet" else ("params",):
        if k not in values:
            raise _err(path, f"'{k}' is missing")
    trainer = values.get("trainer", CONFIGURED_BASELINE)
    if not isinstance(trainer, str) or (trainer != CONFIGURED_BASELINE and hypera_variant_of(trainer) != trainer):
        raise _err(path, f"'trainer' must be {CONFIGURED_BASELINE} or a HYPERA trainer without a budget "
                         f"(HyperaTrainer, HyperaTrainer_LR, ...), got {trainer!r}: the search sets the budget")
    dataset = values.get("dataset", "none")
    if isinstance(dataset, bool) or not isinstance(dataset, (int, str)) or str(dataset).strip() == "":
        raise _err(path, f"'dataset' must be an nnU-Net dataset id or name, got {dataset!r}")
    configuration = values.get("configuration", "3d_fullres")
    plans = values.get("plans", "nnUNetPlans")
    device = values.get("device", "cpu")
    for k, v in (("configuration", configuration), ("plans", plans)):
        if not isinstance(v, str) or not v:
            raise _err(path, f"'{k}' must be a name, got {v!r}")
    if device not in ("cpu", "cuda"):
        raise _err(path, f"'device' must be cpu or cuda, got {device!r}")
    fold = _int(path, "fold", values.get("fold", 0), 0)
    seed = _int(path, "seed", values.get("seed", 0), 0)
    fid = values.get("fidelity", {})
    if not isinstance(fid, Mapping):
        raise _err(path, f"'fidelity' must be a mapping (min_epochs, max_epochs, iterations), got {fid!r}")
    bad = sorted(str(k) for k in fid if k not in FIDELITY_KEYS)
    if bad:
        raise _err(path, f"unknown key(s) {bad} in 'fidelity'; known: {', '.join(FIDELITY_KEYS)}")
    max_epochs = _int(path, "fidelity.max_epochs", fid.get("max_epochs", 1000), 1)
    min_epochs = _int(path, "fidelity.min_epochs", fid.get("min_epochs", max(1, max_epochs // 27)), 1)
    if min_epochs > max_epochs:
        raise _err(path, f"'fidelity.min_epochs' ({min_epochs}) must not exceed max_epochs ({max_epochs})")
    iterations = fid.get("iterations")
    if iterations is not None:
        iterations = _int(path, "fidelity.iterations", iterations, 1)
    fixed = values.get("fixed", {}) or {}
    if not isinstance(fixed, Mapping):
        raise _err(path, f"'fixed' must be a HYPERA configuration (a mapping), got {fixed!r}")
    raw = values["params"]
    if not isinstance(raw, Mapping) or not raw:
        raise _err(path, "'params' must map at least one dotted setting (e.g. nnunet.initial_lr) to a distribution")
    params = []
    for key, spec in raw.items():
        if not isinstance(key, str) or not key or any(not part for part in key.split(".")):
            raise _err(path, f"'params' key {key!r} is not a dotted setting name")
        if key in RESERVED or any(key.startswith(r + ".") for r in RESERVED):
            raise _err(path, f"'params.{key}' is set by the search itself (the fidelity and HYPERA_SEED); use "
                             "'fidelity' and 'seed'")
        params.append(_param(path, key, spec))
    for r in RESERVED:
        head, _, tail = r.partition(".")
        if (tail and tail in (fixed.get(head) or {})) or (not tail and head in fixed):
            raise _err(path, f"'fixed.{r}' is set by the search itself; use 'fidelity' and 'seed'")
    space = SearchSpace(path=path, objective=objective, trainer=trainer, dataset=str(dataset),
                        configuration=configuration, plans=plans,
                        fold=fold, device=device, seed=seed, min_epochs=min_epochs, max_epochs=max_epochs,
                        iterations=iterations, fixed=dict(fixed), params=tuple(params))
    if objective == "hartmann":  # a synthetic function: its parameters are its inputs, not HYPERA settings
        if len(params) != 6 or any(p.kind == "categorical" or p.low < 0 or p.high > 1 for p in params):
            raise _err(path, "the hartmann objective takes exactly six float parameters within [0, 1]")
        return space
    variant = trainer if trainer != CONFIGURED_BASELINE else "HyperaTrainer"
    base = _variant_config(variant, for_run=False).to_dict()
    lows = {p.key: p.corners()[0] for p in params}
    checks = [dict(lows)] + [{**lows, p.key: v} for p in params for v in p.corners()[1:]]
    for values_ in checks:  # every corner must make a valid trial configuration
        try:
            config_from_dict(merge_config(base, space.trial_config(values_)), path, for_run=False)
        except ConfigError as e:
            raise ConfigError(f"{e} (search space {', '.join(f'{k}={v!r}' for k, v in values_.items())})") from None
    return space


def load_space(path: str | os.PathLike) -> SearchSpace:
    """Read and check a search space file (YAML or JSON)."""
    from hypera_nnunet.config import read_config_file

    return parse_space(read_config_file(path), str(Path(path)))
