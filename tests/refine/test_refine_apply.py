"""``refine apply`` on synthetic nnU-Net-shaped folders: output format, determinism, bad input, no partial output."""

import json
import pickle
import shutil

import numpy as np
import pytest
from refine_testdata import write_case, write_model

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine import agents as ag
from hypera_nnunet.refine.apply import refine_folder
from hypera_nnunet.refine.cli import main
from hypera_nnunet.refine.coordinator import Action, ClassPolicy, SegmentationAgentCoordinator


def refiner_file(path, labels=None):
    coord = SegmentationAgentCoordinator(labels=labels or {0: "background", 1: "anterior", 2: "posterior"})
    coord.policies = {
        1: ClassPolicy(1, (Action("region", ag.RegionParams(threshold=0.4)),
                           Action("object", ag.ObjectParams(keep_largest=True)))),
        2: ClassPolicy(2, (Action("boundary", ag.BoundaryParams(sigma_mm=1.0, level=0.45)),)),
    }
    path.write_text(json.dumps(coord.to_dict()))
    return path


@pytest.fixture
def model(tmp_path):
    d = write_model(tmp_path / "m", n_cases=4)
    d["refiner"] = refiner_file(tmp_path / "refiner.json")
    return d


def leftovers(parent):
    return [p.name for p in parent.iterdir() if ".hypera-tmp-" in p.name]


def test_apply_writes_nnunet_files_with_the_same_geometry(model, tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    out = tmp_path / "out"
    summary = refine_folder(model["val"][0], out, model["refiner"], log=lambda m: None)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{c}.nii.gz" for c in model["cases"]] + ["dataset.json", "plans.json",
                                                                     "refinement.json"])
    rw = SimpleITKIO()
    for c in model["cases"]:
        new, p_new = rw.read_seg(str(out / f"{c}.nii.gz"))
        old, p_old = rw.read_seg(str(model["val"][0] / f"{c}.nii.gz"))
        assert new.shape == old.shape and p_new["sitk_stuff"] == p_old["sitk_stuff"]
        assert set(np.unique(new)) <= {0, 1, 2}
    rj = json.loads((out / "refinement.json").read_text())
    assert rj == json.loads(json.dumps(summary))
    entry = rj["cases"][model["cases"][0]]
    assert [a["agent"] for a in entry["classes"]["1"]["actions"]] == ["region", "object"]
    assert {"added", "removed", "params"} <= set(entry["classes"]["1"]["actions"][0])
    assert entry["changed_voxels"] > 0
    assert leftovers(tmp_path) == []


def test_apply_is_deterministic_and_parallel_gives_the_same(model, tmp_path):
    refine_folder(model["val"][0], tmp_path / "a", model["refiner"], log=lambda m: None)
    refine_folder(model["val"][0], tmp_path / "b", model["refiner"], num_processes=2, log=lambda m: None)
    for c in model["cases"]:
        assert (tmp_path / "a" / f"{c}.nii.gz").read_bytes() == (tmp_path / "b" / f"{c}.nii.gz").read_bytes()


def expect_error(model, tmp_path, match):
    out = tmp_path / "out"
    with pytest.raises(HyperaError, match=match):
        refine_folder(model["val"][0], out, model["refiner"], log=lambda m: None)
    assert not out.exists() and leftovers(tmp_path) == []


def test_missing_npz_names_the_case(model, tmp_path):
    (model["val"][0] / f"{model['cases'][2]}.npz").unlink()
    expect_error(model, tmp_path, f"missing {model['cases'][2]}.npz")


def test_shape_mismatch_names_the_case(model, tmp_path):
    c = model["cases"][3]
    p = np.load(model["val"][0] / f"{c}.npz")["probabilities"]
    np.savez_compressed(model["val"][0] / f"{c}.npz", probabilities=p[:, :-1])
    expect_error(model, tmp_path, f"case {c}: probabilities .* does not match the label map")


def test_spacing_mismatch_names_the_case(model, tmp_path):
    c = model["cases"][1]
    pkl = model["val"][0] / f"{c}.pkl"
    props = pickle.loads(pkl.read_bytes())
    props["spacing"] = [1.0, 1.0, 1.5]
    pkl.write_bytes(pickle.dumps(props))
    expect_error(model, tmp_path, f"case {c}: spacing .* does not match")


def test_label_channels_must_match_dataset_json(model, tmp_path):
    c = model["cases"][0]
    p = np.load(model["val"][0] / f"{c}.npz")["probabilities"]
    np.savez_compressed(model["val"][0] / f"{c}.npz", probabilities=np.concatenate([p, 0 * p[:1]]))
    expect_error(model, tmp_path, f"case {c}: .* 4 probability channels but .* declares 3 labels")


def test_unknown_label_in_the_prediction(model, tmp_path):
    c = model["cases"][0]
    seg = np.zeros((24, 28, 24), dtype=np.uint8)
    seg[3, 3, 3] = 5
    write_case(model["val"][0], c, seg, None)
    expect_error(model, tmp_path, f"case {c}: prediction .* label\\(s\\) \\[5\\]")


@pytest.mark.parametrize("ext", ["npz", "pkl", "nii.gz"])
def test_corrupted_files_name_the_case(model, tmp_path, ext):
    c = model["cases"][2]
    f = model["val"][0] / f"{c}.{ext}"
    f.write_bytes(f.read_bytes()[:40])
    expect_error(model, tmp_path, f"case {c}: (cannot read|.*corrupted)")


def test_refiner_labels_must_match_dataset_json(model, tmp_path):
    refiner_file(model["refiner"], labels={0: "background", 1: "a"})
    expect_error(model, tmp_path, "fitted for labels \\[0, 1\\]")


def test_an_existing_output_is_left_untouched_on_error(model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (model["val"][0] / f"{model['cases'][3]}.pkl").write_bytes(b"garbage")
    with pytest.raises(HyperaError, match=model["cases"][3]):
        refine_folder(model["val"][0], out, model["refiner"], log=lambda m: None)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and leftovers(tmp_path) == []


def test_missing_dataset_json_and_same_folder(model, tmp_path):
    with pytest.raises(HyperaError, match="must differ"):
        refine_folder(model["val"][0], model["val"][0], model["refiner"])
    alone = tmp_path / "alone"
    shutil.copytree(model["val"][0], alone)
    with pytest.raises(HyperaError, match="dataset.json and plans.json not found"):
        refine_folder(alone, tmp_path / "o", model["refiner"])
    refine_folder(alone, tmp_path / "o", model["refiner"], dataset_json=model["model"] / "dataset.json",
                  plans_json=model["model"] / "plans.json", log=lambda m: None)


def test_cli_reports_errors_without_traceback(model, tmp_path, capsys):
    (model["val"][0] / f"{model['cases'][1]}.npz").unlink()
    rc = main(["refine", "apply", "-i", str(model["val"][0]), "-o", str(tmp_path / "o"), "-m", str(model["refiner"])])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("hypera-nnunet: error:") and model["cases"][1] in err
    assert "Traceback" not in err
