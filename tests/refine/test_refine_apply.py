"""``refine apply`` on synthetic nnU-Net-shaped folders: output format, determinism, bad input, no partial output,
full and read-only disks, permissions, and files that must not run code."""

import errno
import json
import os
import pickle
import shutil
import stat

import numpy as np
import pytest
from refine_testdata import write_case, write_model

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine import io
from hypera_nnunet.refine import steps as st
from hypera_nnunet.refine.apply import refine_folder
from hypera_nnunet.refine.cli import main
from hypera_nnunet.refine.refiner import ClassChain, Refiner, TunedStep


def refiner_file(path, labels=None):
    coord = Refiner(labels=labels or {0: "background", 1: "anterior", 2: "posterior"})
    coord.chains = {
        1: ClassChain(1, (TunedStep("threshold_grow", st.ThresholdGrowParams(threshold=0.4)),
                          TunedStep("components", st.ComponentParams(keep_largest=True)))),
        2: ClassChain(2, (TunedStep("boundary_level", st.BoundaryLevelParams(sigma_mm=1.0, level=0.45)),)),
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
    refiner = Refiner.from_dict(json.loads(model["refiner"].read_text()))
    rj = json.loads((out / "refinement.json").read_text())
    assert rj == json.loads(json.dumps(summary))
    for c in model["cases"]:
        new, p_new = rw.read_seg(str(out / f"{c}.nii.gz"))
        old, p_old = rw.read_seg(str(model["val"][0] / f"{c}.nii.gz"))
        assert new.shape == old.shape and p_new["sitk_stuff"] == p_old["sitk_stuff"]
        probs = np.load(model["val"][0] / f"{c}.npz")["probabilities"]
        expected, log = refiner.refine(old[0].astype(np.int16), probs, (1.0, 1.0, 1.0))
        assert (new[0] == expected).all()  # exactly the refiner's output, written by nnU-Net's writer
        entry = rj["cases"][c]
        assert entry["changed_voxels"] == int((expected != old[0]).sum())
        assert [a["step"] for a in entry["classes"]["1"]["steps"]] == ["threshold_grow", "components"]
        assert entry["classes"]["1"]["steps"] == json.loads(json.dumps(log[1]))
    assert sum(rj["cases"][c]["changed_voxels"] for c in model["cases"]) > 0  # the test refines something
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


# ---- label map against the probabilities ------------------------------------------------------------------

def test_label_map_must_be_the_argmax_of_the_probabilities():
    probs = np.array([[0.5, 0.9, 0.2, 0.5004, 0.502], [0.5, 0.1, 0.8, 0.4996, 0.498]], np.float32)[:, None, None, :]
    ok = np.array([[[1, 0, 1, 0, 0]]])  # voxel 0 is a tie; voxel 3 is within float16 rounding of a tie
    io.check_label_map_is_argmax("c", ok, probs, io.Path("c.nii.gz"), io.Path("c.npz"))
    io.check_label_map_is_argmax("c", np.array([[[0, 0, 1, 1, 0]]]), probs, io.Path("c.nii.gz"), io.Path("c.npz"))
    # voxels 1 and 2 pick the far less probable class, voxel 4 one 0.004 below the top: 3 mismatches
    with pytest.raises(HyperaError, match="case c: the label map c.nii.gz differs from the argmax .* c.npz at 3 of 5"):
        io.check_label_map_is_argmax("c", np.array([[[1, 1, 0, 1, 1]]]), probs, io.Path("c.nii.gz"),
                                     io.Path("c.npz"))


def test_a_label_map_cut_in_half_names_the_case(model, tmp_path):
    c = model["cases"][1]
    f = model["val"][0] / f"{c}.nii.gz"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])  # SimpleITK still reads it, as mostly zeros
    expect_error(model, tmp_path, f"case {c}: the label map .*{c}.nii.gz differs from the argmax of the "
                                  f"probabilities in {c}.npz at [0-9]+ of 16128 voxels")


def test_a_postprocessed_label_map_names_the_case_and_the_voxel_count(model, tmp_path):
    c = model["cases"][0]
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    seg = SimpleITKIO().read_seg(str(model["val"][0] / f"{c}.nii.gz"))[0][0].astype(np.uint8)
    assert (seg[2:5, 2:5, 2:5] == 1).all()
    seg[2:5, 2:5, 2:5] = 0  # what nnU-Net's "keep the largest component" does to the spurious block
    write_case(model["val"][0], c, seg, None)
    expect_error(model, tmp_path, f"case {c}: the label map .* at 27 of 16128 voxels")


# ---- output disk ------------------------------------------------------------------------------------------

def test_a_full_disk_is_one_error_naming_the_file(model, tmp_path, monkeypatch, capsys):
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    def full(self, seg, path, properties):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(SimpleITKIO, "write_seg", full)
    c = model["cases"][0]
    expect_error(model, tmp_path, f"case {c}: could not write .*{c}.nii.gz: No space left on device")
    rc = main(["refine", "apply", "-i", str(model["val"][0]), "-o", str(tmp_path / "o"), "-m", str(model["refiner"])])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists() and leftovers(tmp_path) == []


def test_a_file_where_the_output_folder_should_be_is_one_error(model, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(HyperaError, match="cannot create the output folder .*afile/out: .*afile is a file, not a "
                                          "folder"):
        refine_folder(model["val"][0], tmp_path / "afile" / "out", model["refiner"], log=lambda m: None)
    rc = main(["refine", "apply", "-i", str(model["val"][0]), "-o", str(tmp_path / "afile"), "-m",
               str(model["refiner"])])
    err = capsys.readouterr().err
    assert rc == 2 and "exists and is not a folder" in err and "Traceback" not in err


def test_a_read_only_output_disk_is_one_error(model, tmp_path, monkeypatch):
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if ".hypera-tmp-" in str(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    with pytest.raises(HyperaError, match=f"cannot write into {tmp_path} \\(for the output out\\): Read-only file "
                                          "system"):
        refine_folder(model["val"][0], tmp_path / "out", model["refiner"], log=lambda m: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("umask, mode", [(0o022, 0o755), (0o077, 0o700), (0o002, 0o775)])
def test_a_new_output_folder_gets_the_permissions_of_a_plain_mkdir(model, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        refine_folder(model["val"][0], tmp_path / "out", model["refiner"], log=lambda m: None)
        os.mkdir(tmp_path / "plain")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == mode == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


# ---- files that must not run code ---------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def crafted_pickle(marker) -> bytes:
    data = pickle.dumps({"spacing": [1.0, 1.0, 1.0], "x": _Payload(marker)})
    with pytest.raises(FileNotFoundError):  # the payload is live: plain pickle would run it (in a missing folder)
        pickle.loads(pickle.dumps(_Payload(marker.parent / "missing" / "m")))
    return data


def test_a_crafted_pickle_as_the_refiner_runs_nothing(model, tmp_path):
    marker = tmp_path / "marker"
    model["refiner"].write_bytes(crafted_pickle(marker))
    expect_error(model, tmp_path, f"{model['refiner']} is not valid JSON")
    assert not marker.exists()


def test_a_crafted_pickle_as_nnunets_properties_runs_nothing(model, tmp_path):
    marker = tmp_path / "marker"
    c = model["cases"][2]
    pkl = model["val"][0] / f"{c}.pkl"
    pkl.write_bytes(crafted_pickle(marker))
    expect_error(model, tmp_path, f"case {c}: {pkl} is corrupted or not nnU-Net's properties file .*posix.mkdir")
    assert not marker.exists()


def test_nnunets_properties_with_numpy_values_are_read(model, tmp_path):
    c = model["cases"][2]
    pkl = model["val"][0] / f"{c}.pkl"
    props = pickle.loads(pkl.read_bytes())
    props.update(spacing=np.array([1.0, 1.0, 1.0]), shape_before_cropping=tuple(np.int64(s) for s in (24, 28, 24)),
                 extra={np.float32(2.5), frozenset({1})})
    pkl.write_bytes(pickle.dumps(props))
    assert io.read_properties(pkl, c)["shape_before_cropping"] == (24, 28, 24)
    refine_folder(model["val"][0], tmp_path / "out", model["refiner"], log=lambda m: None)
