"""Thin re-export: HYPERA's segmentation-only refinement as nnU-Net postprocessing functions.

The functions live in hypera_nnunet.refine.postprocessing (a postprocessing.pkl stores that import path);
``hypera-nnunet refine fit --steps morphology components`` writes such a pickle for nnUNetv2_apply_postprocessing.
"""

from hypera_nnunet.refine.postprocessing import *  # noqa: F401,F403
