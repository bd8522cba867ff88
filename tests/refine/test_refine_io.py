"""Reading nnU-Net's files: dataset.json checks, locating dataset/plans files, staged output."""

import json

import pytest

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.refine.io import DatasetInfo, StagedFolder, find_dataset_files, list_cases


def write_json(path, obj):
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize("labels, match", [
    ({"background": 0, "a": 1, "ignore": 2}, "ignore label"),
    ({"background": 0, "whole": [1, 2], "core": 2}, "region"),
    ({"background": 0, "a": 2}, "consecutive"),
    ({"background": 0}, "consecutive"),
    ({"background": 0, "a": "1"}, "expected an integer"),
])
def test_dataset_json_checks(tmp_path, labels, match):
    ds = write_json(tmp_path / "dataset.json", {"labels": labels, "file_ending": ".nii.gz"})
    plans = write_json(tmp_path / "plans.json", {})
    with pytest.raises(HyperaError, match=match):
        DatasetInfo.load(ds, plans)


def test_dataset_json_must_be_json(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(HyperaError, match="not valid JSON"):
        DatasetInfo.load(tmp_path / "dataset.json", write_json(tmp_path / "plans.json", {}))
    with pytest.raises(HyperaError, match="not found"):
        DatasetInfo.load(tmp_path / "missing.json", tmp_path / "plans.json")


def test_dataset_info(tmp_path):
    ds = write_json(tmp_path / "dataset.json", {"labels": {"background": 0, "b": 2, "a": 1}, "file_ending": ".nrrd"})
    info = DatasetInfo.load(ds, write_json(tmp_path / "plans.json", {"image_reader_writer": "NoSuchIO"}))
    assert info.labels == {0: "background", 2: "b", 1: "a"} and info.foreground == [1, 2]
    assert info.file_ending == ".nrrd"
    with pytest.raises(HyperaError, match="reader/writer"):
        info.reader_writer()


def test_find_dataset_files(tmp_path):
    model = tmp_path / "model"
    val = model / "fold_0" / "validation"
    val.mkdir(parents=True)
    write_json(model / "dataset.json", {})
    write_json(model / "plans.json", {})
    assert find_dataset_files(val) == (model / "dataset.json", model / "plans.json")
    write_json(val / "plans.json", {})
    assert find_dataset_files(val)[1] == val / "plans.json"
    with pytest.raises(HyperaError, match="dataset.json and plans.json not found"):
        find_dataset_files(tmp_path / "elsewhere")


def test_list_cases_skips_hidden_and_temporary_files(tmp_path):
    for n in ("b.nii.gz", "a.nii.gz", ".tmp.nii.gz", "_x.nii.gz", "a.npz", "c.nii"):
        (tmp_path / n).write_text("")
    assert list_cases(tmp_path, ".nii.gz") == ["a", "b"]
    with pytest.raises(HyperaError, match="not found"):
        list_cases(tmp_path / "nope", ".nii.gz")


def test_staged_folder_commits_or_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with StagedFolder(out) as stage:
        (stage.path / "a.txt").write_text("1")
    assert [p.name for p in out.iterdir()] == ["a.txt"]
    with pytest.raises(RuntimeError):
        with StagedFolder(out) as stage:
            (stage.path / "a.txt").write_text("2")
            (stage.path / "b.txt").write_text("2")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "1"
    with StagedFolder(out) as stage:
        (stage.path / "refinement.json").write_text("{}")
        (stage.path / "a.txt").write_text("3")
    assert (out / "a.txt").read_text() == "3" and (out / "refinement.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
