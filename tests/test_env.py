import os

import pytest

from hypera_nnunet import env
from hypera_nnunet.errors import HyperaError


def test_ext_trainer_dir_holds_the_reexport():
    d = env.ext_trainer_dir()
    assert (d / "hypera_trainers.py").is_file()
    assert "hypera_nnunet.nnunet.trainers" in (d / "hypera_trainers.py").read_text()


def test_ext_trainer_value_adds_ours_once_and_keeps_others():
    ours = str(env.ext_trainer_dir())
    assert env.ext_trainer_value(None) == ours
    v = env.ext_trainer_value(os.pathsep.join(["/a", ours, "/b"]))
    assert v.split(os.pathsep) == ["/a", ours, "/b"]
    assert env.ext_trainer_value("/a").split(os.pathsep) == ["/a", ours]


def test_missing_nnunet_variables_are_named(monkeypatch):
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.setenv("nnUNet_preprocessed", "/x")
    monkeypatch.delenv("nnUNet_results", raising=False)
    with pytest.raises(HyperaError, match="nnUNet_raw, nnUNet_results"):
        env.require_nnunet_folders()


def test_shell_exports(monkeypatch):
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    out = env.shell_exports()
    assert out.splitlines()[0] == f"export nnUNet_extTrainer='{env.ext_trainer_dir()}'"
