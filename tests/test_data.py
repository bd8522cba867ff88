import json

import numpy as np

from hypera_nnunet.data import synthetic_case, write_synthetic_dataset


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
