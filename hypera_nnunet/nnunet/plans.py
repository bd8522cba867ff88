"""Reduced nnU-Net plans for CPU runs.

nnU-Net's Hippocampus 3d_fullres plans cost 4.5-6 s per training step on a 2-core CPU. A reduced
plans file keeps nnU-Net's patch size, spacing, normalisation and network topology, and only
lowers the batch size and the feature widths. It reuses the preprocessed data of the source plans
(the configuration's ``data_identifier`` is kept), so nothing is preprocessed twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypera_nnunet.common.atomic_io import atomic_write_text
from hypera_nnunet.errors import HyperaError

CPU_PLANS_NAME = "hyperaCPUPlans"


def write_reduced_plans(preprocessed_dataset_dir: Path, source_plans: str = "nnUNetPlans",
                        target_plans: str = CPU_PLANS_NAME, configuration: str = "3d_fullres",
                        batch_size: int = 2, feature_divisor: int = 4, min_features: int = 4) -> Path:
    """Write ``<target_plans>.json`` next to the source plans and return its path.

    Only ``configuration`` is kept in the new file. ``features_per_stage`` is divided by
    ``feature_divisor`` (at least ``min_features``); ``batch_size`` replaces the planned one.
    """
    src = Path(preprocessed_dataset_dir) / f"{source_plans}.json"
    if not src.is_file():
        raise HyperaError(
            f"{src} does not exist: the dataset was never planned. Run `nnUNetv2_plan_and_preprocess -d <id>` first."
        )
    plans = json.loads(src.read_text())
    if configuration not in plans["configurations"]:
        raise HyperaError(f"{src} has no configuration '{configuration}' (has: {sorted(plans['configurations'])}).")
    conf = dict(plans["configurations"][configuration])
    if "inherits_from" in conf:
        raise HyperaError(f"configuration '{configuration}' in {src} inherits from another; pick a base configuration.")
    arch = json.loads(json.dumps(conf["architecture"]))
    feats = arch["arch_kwargs"]["features_per_stage"]
    arch["arch_kwargs"]["features_per_stage"] = [max(min_features, int(f) // feature_divisor) for f in feats]
    conf["architecture"] = arch
    conf["batch_size"] = int(batch_size)
    plans["plans_name"] = target_plans
    plans["configurations"] = {configuration: conf}
    dst = src.with_name(f"{target_plans}.json")
    atomic_write_text(dst, json.dumps(plans, indent=2))
    return dst
