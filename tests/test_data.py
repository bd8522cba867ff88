import json
import os

import numpy as np
import pytest

from hypera_nnunet.benchmark.protocol import get_protocol
from hypera_nnunet.data import CPU_ENV, dataset_name, synthetic_case, write_synthetic_dataset
from hypera_nnunet.errors import HyperaError


def test_synthetic_case_has_both_structures_and_is_seeded():
    img1, seg1 = synthetic_case((24, 28, 24), np.random.default_rng(3))
    img2, seg2 = synthetic_case((24, 28, 24), np.random.default_rng(3))
    assert np.array_equal(seg1, seg2) and np.array_equal(img1, img2)
    assert set(np.unique(seg1)) == {0, 1, 2}
    assert img1[seg1 == 1].mean() > img1[seg1 == 0].mean() + 0.3


def test_synthetic_dataset_is_nnunet_raw_format(tmp_path):
    import SimpleITK as sitk

    folder = write_synthetic_dataset(tmp_path, 991, "T", n_train=3, n_test=1, shape=(8, 10, 8), spacing=(2.0, 1.0, 1.0))
    meta = json.loads((folder / "dataset.json").read_text())
    assert folder.name == "Dataset991_T" and meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [f"synth_00{i}_0000.nii.gz" for i in range(3)]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == ["synth_003.nii.gz"]
    im = sitk.ReadImage(str(folder / "imagesTr" / "synth_000_0000.nii.gz"))
    assert im.GetSize() == (8, 10, 8) and im.GetSpacing() == (1.0, 1.0, 2.0)


def test_cpu_env_is_the_one_cpu_setting():
    assert CPU_ENV == {"nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "1", "nnUNet_compile": "0"}
    assert dict(get_protocol("cpu-v2").env) == CPU_ENV and dict(get_protocol("cpu").env) == CPU_ENV


def test_dataset_name_uses_nnunets_lookup_in_the_given_folders(tmp_path, monkeypatch):
    env = {v: str(tmp_path / v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    (tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus").mkdir(parents=True)
    (tmp_path / "nnUNet_raw" / "Dataset004_Hippocampus").mkdir(parents=True)  # the same name twice is one dataset
    (tmp_path / "nnUNet_raw" / "Dataset007_A").mkdir(parents=True)
    (tmp_path / "nnUNet_results" / "Dataset007_B").mkdir(parents=True)
    monkeypatch.setenv("nnUNet_raw", "/elsewhere")
    monkeypatch.delenv("nnUNet_results", raising=False)
    assert dataset_name("4", env) == "Dataset004_Hippocampus" and dataset_name(4, env) == "Dataset004_Hippocampus"
    assert dataset_name("Dataset123_Given") == "Dataset123_Given"  # a full name is nnU-Net's own answer
    with pytest.raises(HyperaError, match="dataset '7': nnU-Net finds several datasets with this id"):
        dataset_name("7", env)
    with pytest.raises(HyperaError, match="dataset '5': nnU-Net finds no dataset with this id"):
        dataset_name("5", env)
    with pytest.raises(HyperaError, match="dataset 'hippo' is neither"):
        dataset_name("hippo", env)
    # the process's own variables are back as they were
    assert os.environ["nnUNet_raw"] == "/elsewhere" and "nnUNet_results" not in os.environ


def test_synthetic_dataset_leaves_no_temporary_files(tmp_path):
    folder = write_synthetic_dataset(tmp_path, 992, "T", n_train=2, n_test=1, shape=(6, 6, 6))
    names = sorted(p.name for p in folder.rglob("*") if p.is_file())
    assert names == ["dataset.json", "synth_000.nii.gz", "synth_000_0000.nii.gz", "synth_001.nii.gz",
                     "synth_001_0000.nii.gz", "synth_002.nii.gz", "synth_002_0000.nii.gz"]
