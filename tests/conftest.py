"""Shared fixtures. ``hippo``: a small real Hippocampus dataset (MSD Task04 subset), converted, planned and
preprocessed by nnU-Net's own CLI, once per test session; the nnU-Net, refine and benchmark tests share it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypera_fakes import FakeKnobs

from hypera_nnunet.data import CPU_ENV, convert_msd_subset, run_nnunet
from hypera_nnunet.env import nnunet_env
from hypera_nnunet.nnunet.plans import write_reduced_plans


@pytest.fixture
def fake_knobs():
    return FakeKnobs()


MSD = Path(__file__).resolve().parents[2] / "shared" / "data" / "Task04_Hippocampus"
if not MSD.is_dir():  # CI clones the repo with shared/ beside it
    MSD = Path(os.environ.get("HYPERA_MSD_HIPPOCAMPUS", "../shared/data/Task04_Hippocampus")).resolve()
DATASET_ID = 904
N_CASES = 12


@pytest.fixture(scope="session")
def hippo(tmp_path_factory):
    """``(env, dataset_name, root)`` for a 12-case Hippocampus subset with ``hyperaCPUPlans``."""
    if not MSD.is_dir():
        pytest.fail(f"real data missing: {MSD} (the MSD Task04_Hippocampus folder in shared/data)")
    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet_env({"nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "pre"),
                      "nnUNet_results": str(root / "res"), **CPU_ENV})
    env.pop("HYPERA_CONFIG", None)
    name = convert_msd_subset(MSD, N_CASES, DATASET_ID, env=env)
    run_nnunet(["nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", "1", "-npfp", "1"],
               env={**env, "nnUNet_n_proc_DA": "1"})
    write_reduced_plans(root / "pre" / name)
    return env, name, root
