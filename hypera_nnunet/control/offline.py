"""Agents across runs: the experience store's pooled transitions, offline SAC updates, warm-started buffers.

``hypera-nnunet agents train --store DIR`` (:func:`train_offline`) builds each agent of a configuration, fills
its replay buffer with every stored transition of that agent (same knobs, same state size), runs SAC updates on
the pooled buffer and returns the policies in the format of a run's ``policies.pt``, so ``transfer.source: DIR``
starts a run from them (``warm_start`` also refills the run's buffers from the store, :func:`fill_from_store`;
``frozen`` only acts).

Rewards can be relabelled before the updates (``reward_mode``):

* ``stored``: as each run's agents received them;
* ``terminal``: stored, plus the run's final validation Dice minus its seeded baseline's (the store's baseline
  of the same identity), spread equally over the run's transitions of that agent: the episodic credit of
  Monte Carlo returns, which gives every action of a run the run's outcome. Runs without an outcome or without
  their baseline keep the stored rewards (counted in the report).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from hypera_nnunet.agents import AGENTS, HyperparameterAgent, learn_together
from hypera_nnunet.errors import HyperaError
from hypera_nnunet.settings import HyperaConfig
from hypera_nnunet.store import ExperienceStore, StoredRun

REWARD_MODES = ("stored", "terminal")
#: each agent's seed is ``seed + AGENT_SEED_STEP * index``, as in the coordinator
AGENT_SEED_STEP = 17


def _terminal_bonus(store: ExperienceStore, run: StoredRun) -> float | None:
    outcome = run.outcome
    identity = run.meta.get("identity")
    if not outcome or not identity or identity.get("seed") is None:
        return None
    base = store.baseline(identity)
    if base is None or not base.get("final"):
        return None
    return float(outcome["foreground_mean"]) - float(base["final"]["foreground_mean"])


def pooled(store: ExperienceStore, agent: str, reward_mode: str = "stored",
           runs: list[StoredRun] | None = None) -> dict:
    """Every stored transition of ``agent``, as arrays, with its knobs and state size (they must agree).

    :returns: ``{"obs", "action", "reward", "next_obs", "done"}`` arrays, ``knobs``, ``obs_dim``, ``runs`` (run
        ids used) and ``relabelled`` (runs whose rewards got a terminal bonus).
    """
    if reward_mode not in REWARD_MODES:
        raise HyperaError(f"reward mode {reward_mode!r}: choose one of {', '.join(REWARD_MODES)}")
    runs = store.runs() if runs is None else runs
    cols: dict[str, list] = {k: [] for k in ("obs", "action", "reward", "next_obs", "done")}
    knobs = obs_dim = None
    used, relabelled = [], []
    for run in runs:
        t = run.transitions.get(agent)
        if t is None or len(t) == 0:
            continue
        info = (run.meta.get("agents") or {}).get(agent, {})
        k, d = tuple(info.get("knobs") or ()), int(t.obs.shape[1])
        if knobs is None:
            knobs, obs_dim = k, d
        elif (k, d) != (knobs, obs_dim):
            raise HyperaError(f"{store.root / 'runs' / run.run_id}: agent '{agent}' has knobs {list(k)} and state "
                              f"size {d}, earlier runs {list(knobs)} and {obs_dim}; keep one trainer's runs per store")
        reward = t.reward.astype(np.float64)
        if reward_mode == "terminal":
            bonus = _terminal_bonus(store, run)
            if bonus is not None:
                reward = reward + bonus / len(reward)
                relabelled.append(run.run_id)
        for name, v in (("obs", t.obs), ("action", t.action), ("reward", reward), ("next_obs", t.next_obs),
                        ("done", t.done)):
            cols[name].append(np.asarray(v))
        used.append(run.run_id)
    if not used:
        return {"runs": [], "relabelled": [], "knobs": (), "obs_dim": 0, "n": 0}
    out = {k: np.concatenate(v) for k, v in cols.items()}
    out.update(runs=used, relabelled=relabelled, knobs=knobs, obs_dim=obs_dim, n=len(out["reward"]))
    return out


def fill_buffer(agent: HyperparameterAgent, data: dict) -> int:
    """Add pooled transitions to ``agent``'s buffer (the newest last, as a run would); returns how many."""
    for i in range(data["n"]):
        agent.buffer.add(data["obs"][i], data["action"][i], float(data["reward"][i]), data["next_obs"][i],
                         bool(data["done"][i]))
    return int(data["n"])


def fill_from_store(agents: list[HyperparameterAgent], store: ExperienceStore) -> dict[str, int]:
    """Warm start: each agent's buffer gets the store's transitions of that agent, if knobs and state size match
    (else the agent is left as it is). Returns agent -> transitions added."""
    runs = store.runs()
    added = {}
    for a in agents:
        data = pooled(store, a.name, runs=runs)
        if data["n"] and tuple(data["knobs"]) == tuple(a.knobs) and data["obs_dim"] == a.sac.obs_dim:
            added[a.name] = fill_buffer(a, data)
    return added


def train_offline(store: ExperienceStore, config: HyperaConfig, updates: int, reward_mode: str = "stored",
                  seed: int = 0) -> tuple[dict, dict]:
    """SAC updates on each configured agent's pooled transitions.

    :param updates: SAC updates per agent (rounded up to whole ``learning.gradient_steps`` rounds).
    :returns: (policies, in the format of a run's ``policies.pt``; a report per agent).
    """
    runs = store.runs()
    agents, report = [], {}
    for i, (name, settings) in enumerate(config.agents.items()):
        data = pooled(store, name, reward_mode, runs)
        if data["n"] == 0:
            report[name] = {"transitions": 0, "note": "no stored transitions"}
            continue
        learning = dataclasses.replace(config.learning, buffer_size=max(config.learning.buffer_size, data["n"]))
        agent = AGENTS[name](settings, data["obs_dim"], knobs=tuple(data["knobs"]), learning=learning,
                             seed=seed + AGENT_SEED_STEP * i)
        fill_buffer(agent, data)
        agents.append(agent)
        report[name] = {"transitions": data["n"], "runs": len(data["runs"]), "relabelled": len(data["relabelled"]),
                        "knobs": list(data["knobs"]), "obs_dim": data["obs_dim"]}
    if not agents:
        raise HyperaError(f"{store.root}: no stored transitions of the agents {list(config.agents)}")
    steps = max(1, config.learning.gradient_steps)
    last: dict[str, dict] = {}
    for _ in range(-(-updates // steps)):
        last.update(learn_together(agents))
    for a in agents:
        report[a.name].update(updates=a.updates, last_losses={k: round(float(v), 5) for k, v in
                                                              last.get(a.name, {}).items()})
    policies = {"config": config.to_dict(), "agents": {a.name: a.policy_state() for a in agents},
                "offline": {"store": str(store.root), "reward_mode": reward_mode, "report": report}}
    return policies, report
