"""HD95 and NSD per label for the benchmark report, read from the prediction and reference files.

Two implementations, two NSD definitions:

* **The report's numbers come from MONAI** (``monai.metrics``, the ``metrics`` extra), when it is installed:
  NSD = ``compute_surface_dice(..., use_subvoxels=True)``, the **surfel-area** definition of Nikolov et al. that
  challenges publish (DeepMind's ``surface-distance``): the boundary is the set of 2x2x2 voxel neighbourhoods
  that mix inside and outside, each weighted by the area of its marching-cubes surface piece in mm² on the
  voxel spacing; NSD at τ = (area of P's boundary within τ of R's + area of R's within τ of P's) / (both areas).
  HD95 = ``compute_hausdorff_distance(..., percentile=95)``: the larger of the two directed 95th percentiles of
  the distances between surface voxels (mask minus its 6-neighbourhood erosion), in mm.
* **The project's own** (:mod:`hypera_nnunet.refine.metrics`, used by ``refine`` and as the fallback here when
  MONAI is missing): the same HD95, and a **voxel-count** NSD (every surface voxel weighs 1), which equals
  MONAI's ``use_subvoxels=False`` and differs from the surfel-area NSD wherever surface voxels stand for
  different areas (anisotropic spacing, edges and corners). ``tests/benchmark/test_bench_surface.py`` checks
  both against MONAI and against hand-derived values.

Empty masks, both ways: both empty, HD95 and NSD are NaN; exactly one empty, NSD = 0 and HD95 = NaN (MONAI's
infinite distance is reported as undefined, like the project's).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.metrics import DEFAULT_NSD_TOLERANCE_MM, surface, surface_scores

__all__ = ["DEFINITIONS", "case_surface_metrics", "definition", "monai_available", "monai_surface_metrics",
           "surface", "surface_metrics"]

#: the NSD definition of each implementation, as the report names it
DEFINITIONS = {
    "monai": "surfel-area NSD (Nikolov et al.; MONAI compute_surface_dice, use_subvoxels=True)",
    "voxel": "voxel-count NSD (each surface voxel weighs 1; hypera_nnunet.refine.metrics; MONAI not installed)",
}


def monai_available() -> bool:
    try:
        import monai.metrics  # noqa: F401
    except ImportError:
        return False
    return True


def definition(backend: str | None = None) -> tuple[str, str]:
    """``(backend, NSD definition)`` for ``backend`` ("monai" or "voxel"; None: MONAI when it is installed)."""
    backend = backend or ("monai" if monai_available() else "voxel")
    if backend not in DEFINITIONS:
        raise HyperaError(f"surface metrics backend '{backend}' is neither of {sorted(DEFINITIONS)}.")
    return backend, DEFINITIONS[backend]


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing,
                    tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> tuple[float, float]:
    """(HD95 mm, voxel-count NSD at ``tolerance_mm``) of two boolean masks, by the project's own implementation."""
    s = surface_scores(np.asarray(pred, bool), np.asarray(ref, bool), spacing, tolerance_mm)
    return s.hd95, s.nsd


def monai_surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing,
                          tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM) -> tuple[float, float]:
    """(HD95 mm, surfel-area NSD at ``tolerance_mm``) of two boolean masks, by MONAI (see the module docstring)."""
    import warnings

    import torch
    from monai.metrics import compute_hausdorff_distance, compute_surface_dice

    p, r = np.asarray(pred, bool), np.asarray(ref, bool)
    if p.shape != r.shape:
        raise ValueError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    if not p.any() and not r.any():
        return math.nan, math.nan
    if not p.any() or not r.any():
        return math.nan, 0.0

    def onehot(m):  # [batch 1, channels (background, label), *spatial]
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    sp = [float(s) for s in spacing]
    with warnings.catch_warnings():  # MONAI's deprecation notices about its own internals
        warnings.simplefilter("ignore", FutureWarning)
        nsd = float(compute_surface_dice(onehot(p), onehot(r), [float(tolerance_mm)], spacing=sp,
                                         use_subvoxels=True)[0, 0])
        hd = float(compute_hausdorff_distance(onehot(p), onehot(r), percentile=95, spacing=sp)[0, 0])
    return (hd if math.isfinite(hd) else math.nan), nsd


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    if not Path(path).is_file():
        raise HyperaError(f"{path} does not exist (needed for HD95/NSD).")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise HyperaError(f"{path} could not be read ({str(e).strip().splitlines()[-1]}).") from None
    return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing()[::-1])


def case_surface_metrics(prediction_file: Path, reference_file: Path, labels,
                         tolerance_mm: float = DEFAULT_NSD_TOLERANCE_MM, backend: str | None = None) -> dict:
    """``{label: {"HD95": mm, "NSD": fraction}}`` for one case read from disk (spacing from the reference).

    :param backend: "monai" (surfel-area NSD) or "voxel" (the project's voxel-count NSD); None: MONAI when installed.
    """
    backend, _ = definition(backend)
    fn = monai_surface_metrics if backend == "monai" else surface_metrics
    pred, _ = _read(prediction_file)
    ref, spacing = _read(reference_file)
    if pred.shape != ref.shape:
        raise HyperaError(f"{prediction_file} has shape {pred.shape} but its reference {reference_file} has "
                          f"{ref.shape}.")
    return {str(lab): dict(zip(("HD95", "NSD"), fn(pred == int(lab), ref == int(lab), spacing, tolerance_mm)))
            for lab in labels}
