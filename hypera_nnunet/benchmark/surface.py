"""HD95 and NSD per label for the benchmark report, read from the prediction and reference files.

The metrics and their definitions live in one place, :mod:`hypera_nnunet.refine.metrics` (surface = mask minus
its 6-neighbourhood erosion; Euclidean distances on the voxel spacing in mm; HD95 = larger directed 95th
percentile; NSD at tolerance τ = share of both surfaces within τ of the other). Both undefined (NaN) when
both masks are empty; when exactly one is empty, NSD = 0 and HD95 = NaN. This module only reads the files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.metrics import surface, surface_scores

__all__ = ["case_surface_metrics", "surface", "surface_metrics"]


def surface_metrics(pred: np.ndarray, ref: np.ndarray, spacing, tolerance_mm: float = 1.0) -> tuple[float, float]:
    """(HD95 mm, NSD at ``tolerance_mm``) for two boolean masks of the same shape."""
    s = surface_scores(np.asarray(pred, bool), np.asarray(ref, bool), spacing, tolerance_mm)
    return s.hd95, s.nsd


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    import SimpleITK as sitk

    if not Path(path).is_file():
        raise HyperaError(f"{path} does not exist (needed for HD95/NSD).")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise HyperaError(f"{path} could not be read ({str(e).strip().splitlines()[-1]}).") from None
    return sitk.GetArrayFromImage(img), tuple(float(s) for s in img.GetSpacing()[::-1])


def case_surface_metrics(prediction_file: Path, reference_file: Path, labels, tolerance_mm: float = 1.0) -> dict:
    """``{label: {"HD95": mm, "NSD": fraction}}`` for one case read from disk (spacing from the reference)."""
    pred, _ = _read(prediction_file)
    ref, spacing = _read(reference_file)
    if pred.shape != ref.shape:
        raise HyperaError(f"{prediction_file} has shape {pred.shape} but its reference {reference_file} has "
                          f"{ref.shape}.")
    return {str(lab): dict(zip(("HD95", "NSD"), surface_metrics(pred == int(lab), ref == int(lab), spacing,
                                                               tolerance_mm)))
            for lab in labels}
