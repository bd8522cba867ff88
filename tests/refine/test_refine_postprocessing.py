"""The nnU-Net postprocessing functions and the export of segmentation-only policies."""

import numpy as np
import pytest
from refine_testdata import ro

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine import steps as st
from hypera_nnunet.refine.postprocessing import chains_to_postprocessing, refine_objects, refine_shape
from hypera_nnunet.refine.refiner import ClassChain, Refiner, TunedStep


def test_functions_take_nnunets_call_convention():
    seg = np.zeros((1, 1, 9), dtype=np.uint8)
    seg[0, 0, [0, 1, 2, 4, 6, 7]] = 1
    seg[0, 0, 8] = 2
    out = refine_objects(ro(seg), label=1, keep_largest=True)
    assert out.tolist() == [[[1, 1, 1, 0, 0, 0, 0, 0, 2]]]
    cube = np.zeros((5, 5, 5), dtype=np.uint8)
    cube[1:4, 1:4, 1:4] = 1
    cube[2, 2, 2] = 0
    assert refine_shape(ro(cube), label=1, fill_holes=True).sum() == 27


def test_removal_guard_in_the_postprocessing_functions():
    seg = np.zeros((1, 1, 9), dtype=np.uint8)
    seg[0, 0, [0, 2, 4, 6, 8]] = 1
    assert (refine_shape(ro(seg), label=1, open_radius=1) == 0).all()
    assert (refine_shape(ro(seg), label=1, open_radius=1, max_removed_fraction=0.5) == seg).all()


def test_export_of_segmentation_only_chains():
    coord = Refiner(["morphology", "components"])
    coord.chains = {1: ClassChain(1, (TunedStep("morphology", st.MorphologyParams(open_radius=1)),)),
                    2: ClassChain(2, (TunedStep("components", st.ComponentParams(min_size_voxels=5)),))}
    fns, kwargs = chains_to_postprocessing(coord)
    assert fns == [refine_shape, refine_objects]
    assert kwargs[0] == {"label": 1, "fill_holes": False, "close_radius": 0, "open_radius": 1, "compactness": 0,
                         "max_removed_fraction": 0.5}
    assert kwargs[1] == {"label": 2, "min_size_voxels": 5, "keep_largest": False, "connectivity": 1,
                         "max_removed_fraction": 0.5}


def test_probability_steps_cannot_be_exported():
    coord = Refiner()
    coord.chains = {1: ClassChain(1, (TunedStep("threshold_grow", st.ThresholdGrowParams(threshold=0.4)),))}
    with pytest.raises(HyperaError, match="needs nnU-Net's probabilities"):
        chains_to_postprocessing(coord)
