import json

import pytest

from hypera_nnunet.cli import main


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / k).mkdir()
        monkeypatch.setenv(k, str(tmp_path / k))
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)
    return tmp_path


def test_train_without_env_gives_one_clear_error(monkeypatch, capsys):
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(k, raising=False)
    assert main(["train", "4", "3d_fullres", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hypera-nnunet: error: nnU-Net environment variable(s) not set") and "Traceback" not in err


def test_unknown_trainer(nnunet_dirs, capsys):
    assert main(["train", "4", "3d_fullres", "0", "-tr", "HyperaTrainer_7epochs"]) == 2
    assert "unknown trainer 'HyperaTrainer_7epochs'" in capsys.readouterr().err


def test_dataset_never_preprocessed(nnunet_dirs, capsys):
    assert main(["train", "4", "3d_fullres", "0", "-tr", "HyperaTrainer"]) == 2
    assert "dataset '4' was never preprocessed" in capsys.readouterr().err


def test_missing_configuration_and_bad_config_file(nnunet_dirs, capsys, monkeypatch):
    ds = nnunet_dirs / "nnUNet_preprocessed" / "Dataset004_Hippocampus"
    ds.mkdir()
    (ds / "nnUNetPlans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    assert main(["train", "4", "3d_fullres", "0"]) == 2
    assert "has no configuration '3d_fullres'" in capsys.readouterr().err
    bad = nnunet_dirs / "bad.json"
    bad.write_text(json.dumps({"agents": {"learning_rat": {}}}))
    monkeypatch.setenv("HYPERA_CONFIG", str(bad))
    assert main(["train", "4", "2d", "0"]) == 2
    assert "unknown agent 'learning_rat'" in capsys.readouterr().err


def test_check_config_and_trainers(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("agents: {learning_rate: {max_factor: 1.5}}\nstrategy: consensus\n")
    assert main(["check-config", str(p)]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["trainers"]) == 0
    assert "HyperaTrainer_Shadow" in capsys.readouterr().out


def test_demo_rejects_an_unregistered_budget(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "d"), "--epochs", "7"]) == 2
    assert "--epochs must be one of" in capsys.readouterr().err


def test_demo_refuses_a_foreign_folder(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("precious")
    assert main(["demo", "--dir", str(tmp_path)]) == 2
    assert "not a hypera-nnunet demo folder" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "precious"
