"""Thin re-export so that nnU-Net's nnUNet_extTrainer lookup finds the HYPERA trainers.

The classes live in hypera_nnunet.nnunet.trainers, so they pickle across nnU-Net's worker processes;
budget variants are built there on first use, through the module __getattr__ re-exported here.
"""

from hypera_nnunet.nnunet.trainers import *  # noqa: F401,F403
from hypera_nnunet.nnunet.trainers import __getattr__  # noqa: F401
