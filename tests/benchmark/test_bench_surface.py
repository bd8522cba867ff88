"""HD95 and NSD: the report's MONAI numbers (surfel-area NSD) and the project's own (voxel-count NSD), each
against hand-derived values on small 3-D boxes with anisotropic spacing, and against each other.

The case: a box of 4 x 5 x 6 voxels (the reference) and the same box shifted by one voxel along axis 0 (the
prediction), spacing (2.0, 1.5, 1.25) mm, tolerance 1.0 mm. Every surface point (voxel centres for the voxel
definition, voxel corners for the surfel one) lies on a grid whose smallest step is 1.25 mm, so at 1.0 mm only
points that coincide with a point of the other surface count as within the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hypera_nnunet.benchmark.surface import definition, monai_surface_metrics, surface_metrics
from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM, surface_scores

N = (4, 5, 6)
SPACING = (2.0, 1.5, 1.25)


def _box(shape=(10, 11, 12), lo=(2, 3, 3), n=N) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[lo[0]:lo[0] + n[0], lo[1]:lo[1] + n[1], lo[2]:lo[2] + n[2]] = True
    return m


def _surfel_areas(s):
    """Marching-cubes area (mm²) at a corner point of a box: on a face perpendicular to axis a (4 of its 8 voxels
    inside: the neighbourhood's cross-section), on an edge along axis a (2 inside: a quad of length s_a across
    the diagonal between two edge midpoints) and at a corner (1 inside: the triangle of three edge midpoints)."""
    s0, s1, s2 = s
    face = (s1 * s2, s0 * s2, s0 * s1)
    edge = (s0 * math.hypot(s1, s2) / 2, s1 * math.hypot(s0, s2) / 2, s2 * math.hypot(s0, s1) / 2)
    corner = math.sqrt((s1 * s2) ** 2 + (s0 * s2) ** 2 + (s0 * s1) ** 2) / 8
    return face, edge, corner


def _hand_surfel_nsd(n, s) -> float:
    """The shifted box's surfel-area NSD when only coinciding corner points count.

    Box corner points: (n1-1)(n2-1) face points on each face perpendicular to axis 0, and so on; n_a - 1 edge
    points on each of the 4 edges along axis a; 8 corners. The two boxes share the lateral rings of corner
    points at the n0 layers they both span: for the reference, n0 - 1 of those layers lie strictly inside it
    (side faces and axis-0 edges) and one is its own top (edges along axes 1 and 2, and its 4 corners); the
    prediction's shared layers mirror them. Top and bottom faces never coincide."""
    face, edge, corner = _surfel_areas(s)
    n0, n1, n2 = n
    total = (2 * (n1 - 1) * (n2 - 1) * face[0] + 2 * (n0 - 1) * (n2 - 1) * face[1] + 2 * (n0 - 1) * (n1 - 1) * face[2]
             + 4 * (n0 - 1) * edge[0] + 4 * (n1 - 1) * edge[1] + 4 * (n2 - 1) * edge[2] + 8 * corner)
    inner_ring = 2 * (n2 - 1) * face[1] + 2 * (n1 - 1) * face[2] + 4 * edge[0]
    own_top_ring = 2 * (n1 - 1) * edge[1] + 2 * (n2 - 1) * edge[2] + 4 * corner
    return ((n0 - 1) * inner_ring + own_top_ring) / total


def test_surfel_area_nsd_by_monai_matches_the_hand_derived_value():
    ref = _box()
    pred = np.roll(ref, 1, axis=0)
    hd, nsd = monai_surface_metrics(pred, ref, SPACING, 1.0)
    expected = _hand_surfel_nsd(N, SPACING)
    # by hand: faces 1.875, 2.5, 3.0 mm²; edges 1.9526, 1.7689, 1.5625; corner 0.5415; total area 309.3146;
    # shared: 3 inner rings of 56.8103 and one own-top ring of 31.9419 per box: 202.3726 / 309.3146
    assert expected == pytest.approx(0.654262, abs=1e-6)
    assert nsd == pytest.approx(expected, abs=1e-6)  # MONAI computes in float32
    # HD95: the prediction's top layer (30 of its 96 surface voxels) is one step of 2 mm from the reference's
    assert hd == pytest.approx(2.0)
    # spacing matters to the surfel areas: isotropic 1 mm at a tolerance of 0.5 mm gives another value
    assert monai_surface_metrics(pred, ref, (1.0, 1.0, 1.0), 0.5)[1] == pytest.approx(
        _hand_surfel_nsd(N, (1.0, 1.0, 1.0)), abs=1e-6)


def test_voxel_count_nsd_of_the_project_matches_the_hand_derived_value():
    ref = _box()
    pred = np.roll(ref, 1, axis=0)
    # surface voxels: 120 - 2*3*4 = 96 per box; shared: the lateral ring (30 - 3*4 = 18 voxels) on the 3 layers
    # strictly inside both boxes' common span; 2 * 54 of 2 * 96
    hd, nsd = surface_metrics(pred, ref, SPACING, 1.0)
    assert nsd == pytest.approx(54 / 96) and hd == pytest.approx(2.0)


def test_the_two_definitions_differ_where_surface_voxels_stand_for_different_areas():
    """The project's voxel-count NSD equals MONAI's ``use_subvoxels=False`` (the same definition) at every
    tolerance; the surfel-area NSD differs (0.6543 against 0.5625 here): the coinciding lateral rings carry
    more area per point than the top and bottom faces at this spacing."""
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    def onehot(m):
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    ref = _box()
    for pred in (np.roll(ref, 1, axis=0), np.roll(np.roll(ref, 2, axis=1), 1, axis=2), _box(lo=(3, 3, 4), n=(3, 5, 4))):
        for tol in (0.5, 1.0, 1.5, 2.5):
            own = surface_scores(pred, ref, SPACING, tol)
            with warnings.catch_warnings():  # MONAI's deprecation notices about its own internals
                warnings.simplefilter("ignore", FutureWarning)
                vox = float(compute_surface_dice(onehot(pred), onehot(ref), [tol], spacing=list(SPACING),
                                                 use_subvoxels=False)[0, 0])
                hd = float(compute_hausdorff_distance(onehot(pred), onehot(ref), percentile=95,
                                                      spacing=list(SPACING))[0, 0])
            assert own.nsd == pytest.approx(vox, abs=1e-6)
            assert own.hd95 == pytest.approx(hd, abs=1e-5)
            assert monai_surface_metrics(pred, ref, SPACING, tol)[0] == pytest.approx(own.hd95, abs=1e-5)
    shifted = np.roll(ref, 1, axis=0)
    assert monai_surface_metrics(shifted, ref, SPACING, 1.0)[1] - surface_metrics(shifted, ref, SPACING, 1.0)[1] \
        == pytest.approx(0.654262 - 0.5625, abs=1e-6)


def test_empty_masks_and_identical_masks():
    ref = _box()
    empty = np.zeros_like(ref)
    for fn in (monai_surface_metrics, surface_metrics):
        hd, nsd = fn(ref, ref, SPACING, 1.0)
        assert hd == 0.0 and nsd == pytest.approx(1.0)
        hd, nsd = fn(empty, ref, SPACING, 1.0)
        assert math.isnan(hd) and nsd == 0.0
        hd, nsd = fn(empty, empty, SPACING, 1.0)
        assert math.isnan(hd) and math.isnan(nsd)


def test_the_default_tolerance_and_the_definition_named():
    assert DEFAULT_NSD_TOLERANCE_MM == 1.0
    backend, text = definition()
    assert backend == "monai" and text.startswith("surfel-area NSD")
    assert definition("voxel")[1].startswith("voxel-count NSD")
