"""End to end on real Hippocampus data: nnU-Net (tiny budget, --npz) -> refine fit -> nnUNetv2_predict
--save_probabilities -> refine apply -> nnUNetv2_evaluate_folder.

Uses the session's 12-case MSD subset (``hippo`` in tests/conftest.py: converted into pytest's temporary folder,
nothing copied into the repository), trained for one epoch of five iterations on the CPU (fold 0), predicted,
refined, into a results folder of its own.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

TRAINER = "nnUNetTrainer_1epochs_5iters"

pytestmark = pytest.mark.nnunet


@pytest.fixture(scope="module")
def run(hippo, tmp_path_factory):
    from hypera_nnunet.data import run_nnunet

    base_env, name, data_root = hippo
    root = tmp_path_factory.mktemp("refine_nnunet")
    env = {**base_env, "nnUNet_results": str(root / "results")}
    dataset_id = name[len("Dataset"):len("Dataset") + 3]
    log = root / "nnunet.log"
    run_nnunet(["nnUNetv2_train", dataset_id, "3d_fullres", "0", "-tr", TRAINER, "-p", "hyperaCPUPlans",
                "-device", "cpu", "--npz"], env=env, log=log)
    model = root / "results" / name / f"{TRAINER}__hyperaCPUPlans__3d_fullres"
    # a prediction folder of nnUNetv2_predict --save_probabilities, on two of the training images
    images = root / "images"
    images.mkdir()
    raw = data_root / "raw" / name
    cases = sorted(p.name[: -len(".nii.gz")] for p in (raw / "labelsTr").glob("*.nii.gz"))[:2]
    for c in cases:
        os.symlink(raw / "imagesTr" / f"{c}_0000.nii.gz", images / f"{c}_0000.nii.gz")
    predicted = root / "predicted"
    run_nnunet(["nnUNetv2_predict", "-i", str(images), "-o", str(predicted), "-d", dataset_id, "-c", "3d_fullres",
                "-f", "0", "-tr", TRAINER, "-p", "hyperaCPUPlans", "-chk", "checkpoint_final.pth", "-device", "cpu",
                "-npp", "0", "-nps", "0", "--save_probabilities"], env=env, log=log)
    return {"root": root, "env": env, "model": model, "raw": raw, "predicted": predicted, "cases": cases,
            "dataset_id": dataset_id, "gt": data_root / "pre" / name / "gt_segmentations"}


def hypera(args, env):
    """The refine CLI in a subprocess with nnU-Net's environment (as a user runs it)."""
    proc = subprocess.run([sys.executable, "-m", "hypera_nnunet.refine.cli", "refine", *args], env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_fit_then_apply_on_real_predictions_and_nnunet_evaluates_them(run):
    from hypera_nnunet.data import run_nnunet
    from hypera_nnunet.refine.io import DatasetInfo

    val = run["model"] / "fold_0" / "validation"
    assert sorted(val.glob("*.npz")), "nnUNetv2_train --npz wrote no probabilities"
    out = hypera(["fit", "-d", run["dataset_id"], "-tr", TRAINER, "-p", "hyperaCPUPlans", "-f", "0",
                  "--population", "4", "--iterations", "1"], run["env"])
    refiner = run["model"] / "hypera_refiner.json"
    assert "wrote" in out and refiner.is_file()
    fit = json.loads(refiner.read_text())["fit"]
    assert sorted(fit["cases"]) == sorted(p.name[:-7] for p in val.glob("*.nii.gz"))
    any_accepted = any(fit["classes"][lab]["accepted"] for lab in ("1", "2"))
    for lab in ("1", "2"):
        before, after = fit["metrics_before"][lab], fit["metrics_after"][lab]
        if fit["classes"][lab]["accepted"]:
            assert after["Dice"] > before["Dice"]
        elif not any_accepted:  # the identity: every metric unchanged (NaN where undefined)
            assert all(np.isclose(after[k], before[k], equal_nan=True) for k in before)
        else:  # this class's chain was rejected, another class's kept: its voxels may change, its Dice may not fall
            assert np.isnan(before["Dice"]) or after["Dice"] >= before["Dice"] - 1e-12

    refined = run["root"] / "refined"
    hypera(["apply", "-i", str(run["predicted"]), "-o", str(refined), "-m", str(refiner)], run["env"])
    info = DatasetInfo.load(refined / "dataset.json", refined / "plans.json")
    rw = info.reader_writer()
    for c in run["cases"]:
        new, p_new = rw.read_seg(str(refined / f"{c}.nii.gz"))
        old, p_old = rw.read_seg(str(run["predicted"] / f"{c}.nii.gz"))
        assert new.shape == old.shape and p_new["sitk_stuff"] == p_old["sitk_stuff"]
        assert set(np.unique(new)) <= {0, 1, 2}
    summary = json.loads((refined / "refinement.json").read_text())
    assert sorted(summary["cases"]) == run["cases"]

    gt = run["root"] / "gt_predicted_cases"  # nnUNetv2_evaluate_folder wants every reference case predicted
    gt.mkdir()
    for c in run["cases"]:
        os.symlink(run["raw"] / "labelsTr" / f"{c}.nii.gz", gt / f"{c}.nii.gz")
    run_nnunet(["nnUNetv2_evaluate_folder", str(gt), str(refined), "-djfile",
                str(refined / "dataset.json"), "-pfile", str(refined / "plans.json"), "-np", "1"], env=run["env"])
    result = json.loads((refined / "summary.json").read_text())
    assert len(result["metric_per_case"]) == len(run["cases"])
    assert set(result["mean"]) == {"1", "2"}


def test_apply_reports_a_missing_npz_on_real_output(run, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in run["predicted"].iterdir():
        if not f.name.endswith(".npz") or run["cases"][1] not in f.name:
            os.symlink(f, broken / f.name)
    from hypera_nnunet.refine.io import DatasetInfo
    from hypera_nnunet.refine.refiner import Refiner

    info = DatasetInfo.load(run["predicted"] / "dataset.json", run["predicted"] / "plans.json")
    refiner = tmp_path / "identity.json"
    refiner.write_text(json.dumps(Refiner(labels=info.labels).to_dict()))
    proc = subprocess.run([sys.executable, "-m", "hypera_nnunet.refine.cli", "refine", "apply", "-i", str(broken),
                           "-o", str(tmp_path / "out"), "-m", str(refiner)], env=run["env"], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and f"{run['cases'][1]}.npz" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()
