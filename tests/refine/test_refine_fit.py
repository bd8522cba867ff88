"""``refine fit`` on synthetic cross-validation folders: refiner file, report, postprocessing.pkl, bad input."""

import json
import pickle

import numpy as np
import pytest
from refine_testdata import write_case, write_model

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.cli import main
from hypera_nnunet.refine.fit import fit_refiner
from hypera_nnunet.refine.search import SearchSettings

SMALL = SearchSettings(population=4, iterations=1, max_search_cases=6)
QUIET = {"log": lambda m: None}


@pytest.fixture
def model(tmp_path):
    return write_model(tmp_path / "m", n_cases=6, folds=2)


def test_fit_cli_writes_the_refiner_and_apply_uses_it(model, tmp_path, capsys):
    out = tmp_path / "refiner.json"
    rc = main(["refine", "fit", "-i", *map(str, model["val"]), "-ref", str(model["gt"]), "-o", str(out),
               "--population", "4", "--iterations", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "Dice" in printed and "NSD@1mm" in printed
    r = json.loads(out.read_text())
    fit = r["fit"]
    assert fit["folds"] == {c: int(c[-1]) % 2 for c in model["cases"]}
    assert set(fit["metrics_before"]) == set(fit["metrics_after"]) == {"1", "2"}
    assert set(fit["metrics_before"]["1"]) >= {"Dice", "HD95", "NSD"} and fit["nsd_tolerance_mm"] == 1.0
    for lab in ("1", "2"):
        assert r["chains"][lab]["steps"] == fit["classes"][lab]["steps"]
    assert not (tmp_path / "refiner_postprocessing.pkl").exists()  # probability steps were used
    rc = main(["refine", "apply", "-i", str(model["val"][1]), "-o", str(tmp_path / "refined"), "-m", str(out)])
    assert rc == 0 and (tmp_path / "refined" / "refinement.json").is_file()


def test_segmentation_only_fit_writes_an_equivalent_nnunet_postprocessing_pkl(model, tmp_path):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.postprocessing.remove_connected_components import apply_postprocessing

    from hypera_nnunet.refine.apply import refine_folder

    out = tmp_path / "seg_only.json"
    result = fit_refiner(model["val"], model["gt"], out, steps=["morphology", "components"], search=SMALL, **QUIET)
    pkl = tmp_path / "seg_only_postprocessing.pkl"
    assert result["postprocessing_pkl"] == str(pkl)
    fns, kwargs = pickle.loads(pkl.read_bytes())
    assert all(f.__module__ == "hypera_nnunet.refine.postprocessing" for f in fns)
    assert any(p["steps"] for p in result["chains"].values())  # the blob removal is found
    refine_folder(model["val"][0], tmp_path / "refined", out, **QUIET)
    rw = SimpleITKIO()
    for f in sorted(model["val"][0].glob("*.nii.gz")):
        seg, _ = rw.read_seg(str(f))
        ours, _ = rw.read_seg(str(tmp_path / "refined" / f.name))
        assert (apply_postprocessing(seg[0], fns, kwargs) == ours[0]).all()


def test_fit_is_seeded(model, tmp_path):
    a = fit_refiner(model["val"], model["gt"], tmp_path / "a.json", seed=3, search=SMALL, **QUIET)
    b = fit_refiner(model["val"], model["gt"], tmp_path / "b.json", seed=3, search=SMALL, **QUIET)
    assert a["chains"] == b["chains"] and a["fit"]["classes"] == b["fit"]["classes"]


def test_missing_reference_names_the_case(model, tmp_path):
    (model["gt"] / f"{model['cases'][4]}.nii.gz").unlink()
    with pytest.raises(HyperaError, match=f"case {model['cases'][4]}: reference .* is missing"):
        fit_refiner(model["val"], model["gt"], tmp_path / "r.json", search=SMALL, **QUIET)
    assert not (tmp_path / "r.json").exists()


def test_reference_shape_and_labels_are_checked(model, tmp_path):
    c0, c1 = model["cases"][0], model["cases"][1]
    write_case(model["gt"], c0, np.zeros((24, 28, 23), np.uint8), None)
    with pytest.raises(HyperaError, match=f"case {c0}: reference .* has shape"):
        fit_refiner(model["val"], model["gt"], tmp_path / "r.json", search=SMALL, **QUIET)
    write_case(model["gt"], c0, np.zeros((24, 28, 24), np.uint8), None)
    bad = np.zeros((24, 28, 24), np.uint8)
    bad[0, 0, 0] = 7
    write_case(model["gt"], c1, bad, None)
    with pytest.raises(HyperaError, match=f"case {c1}: reference .* label\\(s\\) \\[7\\]"):
        fit_refiner(model["val"], model["gt"], tmp_path / "r.json", search=SMALL, **QUIET)


def test_a_case_in_two_folders_is_an_error(model, tmp_path):
    with pytest.raises(HyperaError, match="is in both"):
        fit_refiner([model["val"][0], model["val"][0]], model["gt"], tmp_path / "r.json", search=SMALL, **QUIET)


def test_cli_argument_errors(model, tmp_path, capsys):
    assert main(["refine", "fit", "-i", str(model["val"][0]), "-o", str(tmp_path / "r.json")]) == 2
    assert "-ref" in capsys.readouterr().err
    assert main(["refine", "fit", "-i", str(model["val"][0]), "-ref", str(model["gt"]), "-o",
                 str(tmp_path / "r.json"), "--population", "0"]) == 2
    assert "population" in capsys.readouterr().err


def test_an_unwritable_refiner_path_is_one_error_naming_the_file(model, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "r.json"
    rc = main(["refine", "fit", "-i", *map(str, model["val"]), "-ref", str(model["gt"]), "-o", str(out),
               "--population", "1", "--iterations", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and f"could not write {out}" in err and err.count("\n") == 1 and "Traceback" not in err
