"""``fake_nnunet``: nnU-Net's three folders with a planned fake dataset and two finished folds of two trainers."""

from __future__ import annotations

import json

import pytest
from bench_fakes import BASE, DS, HYP, PLANS, make_fold


@pytest.fixture
def fake_nnunet(tmp_path, monkeypatch):
    pre = tmp_path / "nnUNet_preprocessed" / DS
    pre.mkdir(parents=True)
    (pre / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                                                  "channel_names": {"0": "MRI"}, "file_ending": ".nii.gz"}))
    (pre / f"{PLANS}.json").write_text(json.dumps({"configurations": {"3d_fullres": {}}, "image_reader_writer":
                                                   "SimpleITKIO", "label_manager": "LabelManager"}))
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / v).mkdir(exist_ok=True)
        monkeypatch.setenv(v, str(tmp_path / v))
    base = [[(0.80, 0.70), (0.82, 0.71), (0.78, 0.69)], [(0.81, 0.72), (0.79, 0.70), (0.80, 0.71)]]
    for f in (0, 1):
        make_fold(tmp_path, BASE, f, base[f], shift=1, hypera=False)
        # fold 0 recorded two agents in hypera/config.json (not the six its name suggests); fold 1 has no such file
        make_fold(tmp_path, HYP, f, [(a + 0.02, b - 0.01) for a, b in base[f]], shift=0, hypera=True,
                  agents=["learning_rate", "loss"] if f == 0 else None)
    return tmp_path
