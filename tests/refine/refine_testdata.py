"""Synthetic nnU-Net-shaped prediction folders for the refinement tests (no nnU-Net run needed).

Ground truth: two touching ellipsoids (labels 1 and 2, :func:`hypera_nnunet.data.synthetic_case`).
"Predictions": a softmax over noisy logits with two systematic faults that refinement can fix: foreground
logits biased down (under-segmentation), and a spurious block of label 1 far from the structures.
Files are laid out as nnU-Net's ``<model>/fold_0/validation`` (label map, ``.npz``, ``.pkl``) with
``dataset.json``/``plans.json`` in the model folder.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from scipy import ndimage

from hypera_nnunet.data import synthetic_case

LABELS = {"background": 0, "anterior": 1, "posterior": 2}
PLANS = {"dataset_name": "Dataset999_RefineSynth", "plans_name": "nnUNetPlans", "image_reader_writer": "SimpleITKIO",
         "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "configurations": {},
         "label_manager": "LabelManager"}


def ro(a: np.ndarray) -> np.ndarray:
    """A read-only copy: any in-place write raises, so a test proves a function does not mutate it."""
    b = np.array(a, copy=True)
    b.setflags(write=False)
    return b


def synthetic_prediction(shape, rng: np.random.Generator, bias: float = 1.2, blob: bool = True):
    """(gt, probs, seg) for one case."""
    _, gt = synthetic_case(shape, rng)
    logits = np.zeros((3, *shape), dtype=np.float32)
    for k in range(3):
        logits[k] = 3.0 * (gt == k)
        logits[k] += 0.8 * ndimage.gaussian_filter(rng.normal(size=shape), 1.5).astype(np.float32) / 0.1
    logits[1:] -= bias
    if blob:
        logits[1, 2:5, 2:5, 2:5] += 8.0
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    probs = (e / e.sum(axis=0, keepdims=True)).astype(np.float32)
    return gt.astype(np.uint8), probs, np.argmax(probs, axis=0).astype(np.uint8)


def sitk_props(spacing=(1.0, 1.0, 1.0)) -> dict:
    return {"sitk_stuff": {"spacing": tuple(float(s) for s in spacing[::-1]), "origin": (0.0, 0.0, 0.0),
                           "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
            "spacing": [float(s) for s in spacing]}


def write_case(folder: Path, case: str, seg: np.ndarray, probs: np.ndarray | None, spacing=(1.0, 1.0, 1.0)) -> None:
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    folder.mkdir(parents=True, exist_ok=True)
    SimpleITKIO().write_seg(seg.astype(np.uint8), str(folder / f"{case}.nii.gz"), sitk_props(spacing))
    if probs is not None:
        np.savez_compressed(folder / f"{case}.npz", probabilities=probs)
        props = {**sitk_props(spacing), "shape_before_cropping": tuple(seg.shape),
                 "bbox_used_for_cropping": [[0, s] for s in seg.shape]}
        with open(folder / f"{case}.pkl", "wb") as f:
            pickle.dump(props, f)


def write_model(root: Path, n_cases: int = 6, shape=(24, 28, 24), seed: int = 0, folds: int = 1) -> dict:
    """Write ``root/model/fold_k/validation`` (cases split round-robin), ``root/gt`` and the JSON files."""
    rng = np.random.default_rng(seed)
    model = root / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / "dataset.json").write_text(json.dumps({"channel_names": {"0": "MRI"}, "labels": LABELS,
                                                    "numTraining": n_cases, "file_ending": ".nii.gz"}))
    (model / "plans.json").write_text(json.dumps(PLANS))
    val = [model / f"fold_{k}" / "validation" for k in range(folds)]
    cases = []
    for i in range(n_cases):
        case = f"synth_{i:03d}"
        gt, probs, seg = synthetic_prediction(shape, rng)
        write_case(val[i % folds], case, seg, probs)
        write_case(root / "gt", case, gt, None)
        cases.append(case)
    return {"model": model, "val": val, "gt": root / "gt", "cases": cases}
