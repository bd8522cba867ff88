"""Benchmark: hypera_nnunet's SAC against stable-baselines3's SAC on gymnasium's Pendulum-v1.

Both learners get the same budget and SB3's default SAC hyperparameters: 256x256 networks, Adam at
3e-4 for actor, critics and temperature, batch 256, a 1e6 replay buffer, 100 uniformly random
warm-up steps, tau 0.005, gamma 0.99, one gradient step after every env step once more than
``learning_starts`` steps were taken, and an auto-tuned temperature (initial value 1) with target
entropy ``-act_dim``. Torch runs on the CPU with one thread for both.

Our SAC has no loop by design, so the loop lives here and mirrors SB3's ``learn``: warm-up actions
are drawn from the action space, the stored ``done`` is ``terminated`` only (Pendulum's 200-step
time limit is a truncation, which SB3 also bootstraps through), and training begins once more
than ``learning_starts`` steps are stored.

Measured per seed and implementation:

* final return: the deterministic policy over ``--eval-episodes`` episodes on a separate env, with
  the same reset seeds for both implementations;
* time per gradient step: the wall time of replay sampling plus the update, summed over the run
  and divided by the number of gradient steps. For SB3 that is the time spent in
  ``SAC.train(gradient_steps=1, batch_size=256)`` (it samples the buffer and updates; it also does
  its small per-call bookkeeping: learning-rate schedule and logger records); for ours it is
  ``buffer.sample(256)`` plus ``agent.update(batch)``. Env steps and acting are outside it;
* the run's total training wall time (env steps, acting, storing, updates), for context.

Then a paired timing (``paired_timing``): both learners take short blocks of gradient steps in turn
on the same stored transitions, so a change in the machine's load hits both alike. On a shared
machine this is the fairer speed comparison; the per-run times above are kept as measured.

Ours and SB3 are interleaved per seed (the order alternates with the seed) so that load from other
processes on a shared machine affects both alike.

Usage (needs the ``rl-check`` extra: ``pip install -e '.[rl-check]'``)::

    python benchmarks/sac_pendulum.py --seeds 0 1 2 3 4 --steps 20000
    python benchmarks/sac_pendulum.py --paired-only   # redo only the paired timing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hypera_nnunet.rl import SAC, ReplayBuffer, SACConfig

ENV_ID = "Pendulum-v1"
HP = {
    "hidden": [256, 256], "learning_rate": 3e-4, "batch_size": 256, "buffer_size": 1_000_000,
    "learning_starts": 100, "tau": 0.005, "gamma": 0.99, "train_freq": 1, "gradient_steps": 1,
    "init_alpha": 1.0, "target_entropy": "-act_dim",
}
EVAL_SEED_BASE = 10_000


def evaluate(policy, seed: int, episodes: int) -> list[float]:
    """Returns of ``policy(obs) -> action`` over ``episodes`` episodes with fixed reset seeds."""
    import gymnasium as gym

    env = gym.make(ENV_ID)
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=EVAL_SEED_BASE + 100 * seed + ep)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def run_ours(seed: int, steps: int, eval_episodes: int) -> dict:
    import gymnasium as gym

    env = gym.make(ENV_ID)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    config = SACConfig(hidden=tuple(HP["hidden"]), gamma=HP["gamma"], tau=HP["tau"], actor_lr=HP["learning_rate"],
                       critic_lr=HP["learning_rate"], alpha_lr=HP["learning_rate"], init_alpha=HP["init_alpha"])
    agent = SAC(obs_dim, act_dim, low, high, config, seed=seed)
    buffer = ReplayBuffer(HP["buffer_size"], obs_dim, act_dim, seed=seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    grad_time, n_grad = 0.0, 0
    t_start = time.perf_counter()
    for step in range(steps):
        action = env.action_space.sample() if step < HP["learning_starts"] else agent.act(obs)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
        if step + 1 > HP["learning_starts"]:
            for _ in range(HP["gradient_steps"]):
                t0 = time.perf_counter()
                agent.update(buffer.sample(HP["batch_size"]))
                grad_time += time.perf_counter() - t0
                n_grad += 1
    train_wall = time.perf_counter() - t_start
    env.close()
    returns = evaluate(lambda o: agent.act(o, deterministic=True), seed, eval_episodes)
    return _record("ours", seed, returns, grad_time, n_grad, train_wall)


def run_sb3(seed: int, steps: int, eval_episodes: int) -> dict:
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC

    class TimedSAC(SB3SAC):
        """SB3's SAC with its ``train`` calls (buffer sampling + gradient steps) timed."""

        grad_time = 0.0
        n_grad = 0

        def train(self, gradient_steps: int, batch_size: int = 64) -> None:
            t0 = time.perf_counter()
            super().train(gradient_steps, batch_size)
            self.grad_time += time.perf_counter() - t0
            self.n_grad += gradient_steps

    env = gym.make(ENV_ID)
    model = TimedSAC(
        "MlpPolicy", env, learning_rate=HP["learning_rate"], buffer_size=HP["buffer_size"],
        learning_starts=HP["learning_starts"], batch_size=HP["batch_size"], tau=HP["tau"], gamma=HP["gamma"],
        train_freq=HP["train_freq"], gradient_steps=HP["gradient_steps"], ent_coef="auto",
        target_entropy="auto", policy_kwargs={"net_arch": list(HP["hidden"])}, seed=seed, device="cpu", verbose=0,
    )
    t_start = time.perf_counter()
    model.learn(total_timesteps=steps)
    train_wall = time.perf_counter() - t_start
    env.close()
    returns = evaluate(lambda o: model.predict(o, deterministic=True)[0], seed, eval_episodes)
    return _record("sb3", seed, returns, model.grad_time, model.n_grad, train_wall)


def paired_timing(rounds: int, block: int, n_transitions: int = 10_000) -> dict:
    """Time per gradient step with the two learners alternating in short blocks on the same data.

    Load from other processes on a shared machine changes over minutes, so whole runs of one
    learner after the other can see different loads. Here both fill their buffers with the same
    Pendulum transitions (uniformly random actions), then take ``block`` gradient steps each in
    turn (the order alternates), ``rounds`` times; each step is one buffer sample plus one update
    (SB3: one ``train(1, 256)`` call), as in the learning runs.
    """
    import gymnasium as gym
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3.common.logger import configure

    env = gym.make(ENV_ID)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    config = SACConfig(hidden=tuple(HP["hidden"]), gamma=HP["gamma"], tau=HP["tau"], actor_lr=HP["learning_rate"],
                       critic_lr=HP["learning_rate"], alpha_lr=HP["learning_rate"], init_alpha=HP["init_alpha"])
    ours = SAC(obs_dim, act_dim, low, high, config, seed=0)
    buffer = ReplayBuffer(HP["buffer_size"], obs_dim, act_dim, seed=0)
    sb3 = SB3SAC("MlpPolicy", env, learning_rate=HP["learning_rate"], buffer_size=HP["buffer_size"],
                 learning_starts=0, batch_size=HP["batch_size"], tau=HP["tau"], gamma=HP["gamma"],
                 train_freq=HP["train_freq"], gradient_steps=HP["gradient_steps"], ent_coef="auto",
                 target_entropy="auto", policy_kwargs={"net_arch": list(HP["hidden"])}, seed=0, device="cpu")
    sb3.set_logger(configure(None, []))
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    for _ in range(n_transitions):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, float(reward), next_obs, terminated)
        sb3.replay_buffer.add(obs[None], next_obs[None], sb3.policy.scale_action(action)[None], np.array([reward]),
                              np.array([terminated]), [{}])
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()

    def ours_block() -> float:
        t0 = time.perf_counter()
        for _ in range(block):
            ours.update(buffer.sample(HP["batch_size"]))
        return (time.perf_counter() - t0) / block

    def sb3_block() -> float:
        t0 = time.perf_counter()
        for _ in range(block):
            sb3.train(gradient_steps=1, batch_size=HP["batch_size"])
        return (time.perf_counter() - t0) / block

    ours_block(), sb3_block()  # warm-up
    t_ours, t_sb3 = [], []
    for r in range(rounds):
        if r % 2 == 0:
            t_ours.append(ours_block())
            t_sb3.append(sb3_block())
        else:
            t_sb3.append(sb3_block())
            t_ours.append(ours_block())
    ratios = np.array(t_ours) / np.array(t_sb3)
    return {
        "rounds": rounds, "block": block, "n_transitions": n_transitions,
        "ours_ms_per_step": [1000 * t for t in t_ours], "sb3_ms_per_step": [1000 * t for t in t_sb3],
        "ours_ms_median": 1000 * float(np.median(t_ours)), "sb3_ms_median": 1000 * float(np.median(t_sb3)),
        "ratio_median": float(np.median(ratios)),
        "ratio_q25_q75": [float(q) for q in np.quantile(ratios, [0.25, 0.75])],
        "ours_faster_in_rounds": int(np.sum(ratios < 1)),
    }


def _record(impl: str, seed: int, returns: list[float], grad_time: float, n_grad: int, train_wall: float) -> dict:
    return {
        "impl": impl, "seed": seed, "eval_returns": returns, "return_mean": float(np.mean(returns)),
        "return_sd": float(np.std(returns)), "n_grad_steps": n_grad, "grad_time_s": grad_time,
        "ms_per_grad_step": 1000.0 * grad_time / max(n_grad, 1), "train_wall_s": train_wall,
    }


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), (float(statistics.stdev(values)) if len(values) > 1 else 0.0)


def summarise(runs: list[dict]) -> dict:
    out = {}
    for impl in ("ours", "sb3"):
        rs = [r for r in runs if r["impl"] == impl]
        if not rs:
            continue
        out[impl] = {key: _mean_sd([r[key] for r in rs]) for key in ("return_mean", "ms_per_grad_step", "train_wall_s")}
        out[impl]["n_seeds"] = len(rs)
    if "ours" in out and "sb3" in out:
        ours_ret, sb3_ret = out["ours"]["return_mean"][0], out["sb3"]["return_mean"][0]
        ours_ms, sb3_ms = out["ours"]["ms_per_grad_step"][0], out["sb3"]["ms_per_grad_step"][0]
        out["return_rel_diff"] = (ours_ret - sb3_ret) / abs(sb3_ret)
        out["return_within_10pct"] = abs(ours_ret - sb3_ret) <= 0.1 * abs(sb3_ret)
        out["return_not_worse_than_10pct"] = ours_ret >= sb3_ret - 0.1 * abs(sb3_ret)
        out["time_ratio_ours_over_sb3"] = ours_ms / sb3_ms
        out["no_slower_per_grad_step"] = ours_ms <= sb3_ms
    return out


def machine() -> dict:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    import gymnasium
    import stable_baselines3

    return {
        "cpu": cpu, "logical_cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "numpy": np.__version__,
        "gymnasium": gymnasium.__version__, "stable_baselines3": stable_baselines3.__version__,
    }


def write_markdown(path: Path, result: dict) -> None:
    s, m, a = result["summary"], result["machine"], result["args"]
    lines = [
        "# SAC on Pendulum-v1: hypera_nnunet vs stable-baselines3",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs (shared with other jobs), no GPU; torch "
        f"{m['torch']} on CPU with {m['torch_threads']} thread; gymnasium {m['gymnasium']}, stable-baselines3 "
        f"{m['stable_baselines3']}, Python {m['python']}.",
        "",
        f"Setup: {a['steps']} env steps per run, seeds {a['seeds']}, SB3's default SAC hyperparameters for both "
        f"({json.dumps(HP)}). Final return: deterministic policy, {a['eval_episodes']} episodes, same reset seeds "
        "for both. Time per gradient step: replay sampling + one update (SB3: its `train(1, 256)` call, which also "
        "does its per-call bookkeeping), summed over the run / number of gradient steps; env steps and acting are "
        f"excluded. Ours and SB3 alternate per seed. Raw numbers: `{result['json']}`.",
        "",
        "| seed | impl | final return (mean ± sd over episodes) | ms / grad step | train wall (s) |",
        "|---:|---|---:|---:|---:|",
    ]
    for r in sorted(result["runs"], key=lambda r: (r["seed"], r["impl"])):
        lines.append(f"| {r['seed']} | {r['impl']} | {r['return_mean']:.1f} ± {r['return_sd']:.1f} | "
                     f"{r['ms_per_grad_step']:.2f} | {r['train_wall_s']:.0f} |")
    lines += ["", "Across seeds (mean ± sd of the per-seed values):", "",
              "| impl | final return | ms / grad step | train wall (s) |", "|---|---:|---:|---:|"]
    for impl in ("ours", "sb3"):
        if impl in s:
            v = s[impl]
            lines.append(f"| {impl} | {v['return_mean'][0]:.1f} ± {v['return_mean'][1]:.1f} | "
                         f"{v['ms_per_grad_step'][0]:.2f} ± {v['ms_per_grad_step'][1]:.2f} | "
                         f"{v['train_wall_s'][0]:.0f} ± {v['train_wall_s'][1]:.0f} |")
    if "return_rel_diff" in s:
        yes = {True: "yes", False: "no"}
        lines += [
            "",
            f"- Final return, ours relative to SB3: {100 * s['return_rel_diff']:+.1f}% of |SB3 mean| "
            f"(positive = ours better). Within 10% of SB3: {yes[s['return_within_10pct']]}; "
            f"not worse than SB3 by more than 10%: {yes[s['return_not_worse_than_10pct']]}.",
            f"- Time per gradient step, ours / SB3: {s['time_ratio_ours_over_sb3']:.3f}. "
            f"No slower than SB3: {yes[s['no_slower_per_grad_step']]}.",
        ]
    pt = result.get("paired_timing")
    if pt:
        lines += [
            "",
            f"Paired timing (less exposed to the shared machine's changing load): both learners on the same "
            f"{pt['n_transitions']} random-action Pendulum transitions, {pt['block']} gradient steps each in turn, "
            f"{pt['rounds']} rounds, order alternating. Median ms per gradient step: ours {pt['ours_ms_median']:.2f}, "
            f"SB3 {pt['sb3_ms_median']:.2f}; median per-round ratio ours / SB3 {pt['ratio_median']:.3f} "
            f"(quartiles {pt['ratio_q25_q75'][0]:.3f} to {pt['ratio_q25_q75'][1]:.3f}); ours faster in "
            f"{pt['ours_faster_in_rounds']} of {pt['rounds']} rounds.",
        ]
        if result.get("paired_timing_command"):
            lines += ["", f"Paired timing command: `{result['paired_timing_command']}`"]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--json", type=Path, default=Path("docs/sac_pendulum.json"))
    parser.add_argument("--md", type=Path, default=Path("docs/sac_pendulum.md"))
    parser.add_argument("--paired-rounds", type=int, default=30, help="rounds of the paired timing (0: skip it)")
    parser.add_argument("--paired-block", type=int, default=50, help="gradient steps per learner per round")
    parser.add_argument("--paired-only", action="store_true",
                        help="only (re)do the paired timing, adding it to an existing --json result")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    if args.paired_only:
        result = json.loads(args.json.read_text())
        result.setdefault("json", str(args.json))
        result["paired_timing"] = paired_timing(args.paired_rounds, args.paired_block)
        result["paired_timing_command"] = command
        args.json.write_text(json.dumps(result, indent=2))
        write_markdown(args.md, result)
        print(json.dumps({k: v for k, v in result["paired_timing"].items() if "per_step" not in k}, indent=2))
        return
    result = {
        "command": command,
        "args": {"seeds": args.seeds, "steps": args.steps, "eval_episodes": args.eval_episodes},
        "json": str(args.json), "hyperparameters": HP, "machine": machine(), "runs": [],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        order = (run_ours, run_sb3) if seed % 2 == 0 else (run_sb3, run_ours)
        for fn in order:
            rec = fn(seed, args.steps, args.eval_episodes)
            result["runs"].append(rec)
            print(f"seed {seed} {rec['impl']:>4}: return {rec['return_mean']:8.1f} ± {rec['return_sd']:5.1f}  "
                  f"{rec['ms_per_grad_step']:.2f} ms/grad step  wall {rec['train_wall_s']:.0f} s", flush=True)
            result["summary"] = summarise(result["runs"])
            args.json.write_text(json.dumps(result, indent=2))
    if args.paired_rounds > 0:
        result["paired_timing"] = paired_timing(args.paired_rounds, args.paired_block)
        args.json.write_text(json.dumps(result, indent=2))
    write_markdown(args.md, result)
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
