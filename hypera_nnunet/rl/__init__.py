"""Soft Actor-Critic, split as stable-baselines3 splits it.

* :mod:`.policies` -- the networks: a tanh-squashed Gaussian actor and twin Q critics.
* :mod:`.sac` -- :class:`SAC`: acting, and one gradient step ``update(batch) -> dict`` with no loop.
* :mod:`.batched` -- :func:`~.batched.update_together`: the same ``update`` for several learners in one
  batched computation (HYPERA's six agents learn through it).
* :mod:`.buffers` -- uniform and prioritized replay with typed :class:`ReplayBatch` samples.
* :mod:`.normalize` -- running z-score for rewards.
"""

from hypera_nnunet.rl.buffers import PrioritizedReplayBuffer, ReplayBatch, ReplayBuffer
from hypera_nnunet.rl.normalize import RunningZScore
from hypera_nnunet.rl.sac import SAC, SACConfig

__all__ = ["SAC", "SACConfig", "ReplayBuffer", "PrioritizedReplayBuffer", "ReplayBatch", "RunningZScore"]
