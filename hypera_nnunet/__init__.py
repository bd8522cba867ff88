"""HYPERA for nnU-Net v2.

Reinforcement-learning agents that adjust nnU-Net's hyperparameters inside its epoch loop
(:mod:`hypera_nnunet.agents`, :mod:`hypera_nnunet.control`, :mod:`hypera_nnunet.nnunet`), a
Soft Actor-Critic core (:mod:`hypera_nnunet.rl`), and segmentation refinement of nnU-Net's saved
probabilities (:mod:`hypera_nnunet.refine`).
"""

__version__ = "0.1.0"
