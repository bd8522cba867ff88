"""Explore, then exploit, then fine-tune, by training progress (epoch / num_epochs)."""

from __future__ import annotations

from hypera_nnunet.settings import ExplorationConfig


def exploration_phase(progress: float, config: ExplorationConfig) -> tuple[str, float]:
    """``(phase, noise_scale)``: explore (1.0), exploit (``exploit_noise``), fine_tune (0: deterministic)."""
    if progress < config.explore_until:
        return "explore", 1.0
    if progress < config.exploit_until:
        return "exploit", config.exploit_noise
    return "fine_tune", 0.0


def target_entropy(act_dim: int, progress: float, config: ExplorationConfig) -> float:
    """SAC's target entropy, annealed linearly from ``-act_dim * entropy_start`` to ``-act_dim * entropy_end``."""
    return -act_dim * (config.entropy_start + (config.entropy_end - config.entropy_start) * progress)
