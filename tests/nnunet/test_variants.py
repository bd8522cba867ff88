"""Variants: 15 classes written out, budgets built on first use, found by nnU-Net's own lookup, pickled,
and composed with nnU-Net's own variants through the MRO."""

import inspect
import json
import os
import pickle
import subprocess
import sys

import pytest

from hypera_nnunet.config import variant_config
from hypera_nnunet.nnunet import trainers
from hypera_nnunet.nnunet.budget import parse_budget, val_iterations
from hypera_nnunet.nnunet.variant_table import VARIANTS, is_hypera_name


def test_variant_names_follow_nnunet_and_pickle():
    for name in ("HyperaTrainer_5epochs", "HyperaTrainer_Shadow_10epochs_25iters", "nnUNetTrainer_20epochs_25iters",
                 "HyperaTrainer_LR_3epochs_5iters", "HyperaTrainer_Frozen"):
        cls = getattr(trainers, name)
        assert cls.__name__ == name and cls.__module__ == "hypera_nnunet.nnunet.trainers"
        assert pickle.loads(pickle.dumps(cls)) is cls
        assert getattr(trainers, name) is cls  # built once
    assert not hasattr(trainers, "nnUNetTrainer_5epochs")  # nnU-Net's own, not shadowed
    assert not hasattr(trainers, "HyperaTrainer_7epochs") and not hasattr(trainers, "HyperaTrainer_5epochs_7iters")
    assert trainers.__all__ == [*VARIANTS, "nnUNetTrainerSeedable", "nnUNetTrainerConfigured"]
    configured = trainers.nnUNetTrainerConfigured_3epochs_5iters  # the search's trainer at a benchmark's budget
    assert configured.__bases__ == (trainers.nnUNetTrainerConfigured,)
    assert pickle.loads(pickle.dumps(configured)) is configured


def test_import_builds_only_the_written_out_classes():
    code = ("import hypera_nnunet.nnunet.trainers as t, hypera_nnunet.nnunet.variants as v; "
            "print(len(v.CLASSES), len(v._BUDGETS)); t.HyperaTrainer_LR_3epochs_5iters; print(len(v._BUDGETS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["15", "0", "1"]


def test_budget_names_parse_exactly():
    b = parse_budget("HyperaTrainer_Shadow_10epochs_25iters")
    assert (b.base, b.epochs, b.iters) == ("HyperaTrainer_Shadow", 10, 25)
    assert b.name == "HyperaTrainer_Shadow_10epochs_25iters"
    assert parse_budget("HyperaTrainer_10epochs").iters is None
    assert parse_budget("HyperaTrainer_11epochs") is None and parse_budget("HyperaTrainer") is None
    names = ("HyperaTrainer_Aug_2epochs_5iters", "nnUNetTrainer_2epochs", "nnUNetTrainer_2epochs_5iters",
             "MyTrainer_2epochs")
    assert [is_hypera_name(n) for n in names] == [True, False, True, False]


def test_budget_sets_epochs_and_iterations():
    cls = trainers.HyperaTrainer_Shadow_10epochs_25iters
    assert cls.__mro__[1] is trainers.HyperaTrainer_Shadow and cls.hypera_variant == "HyperaTrainer_Shadow"


def test_init_signature_is_nnunets_explicit_one():
    # nnU-Net records __init__'s arguments with inspect.signature + locals(): *args would break it
    params = list(inspect.signature(trainers.HyperaTrainer_Shadow_10epochs_25iters.__init__).parameters)
    assert params == ["self", "plans", "configuration", "fold", "dataset_json", "device"]
    assert list(inspect.signature(trainers.HyperaTrainer.__init__).parameters) == params


def test_val_iterations_keep_nnunets_ratio():
    assert [val_iterations(i) for i in (5, 10, 25, 50, 250)] == [2, 2, 5, 10, 50]


def test_variant_configs(monkeypatch):
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)
    assert variant_config("HyperaTrainer_Shadow").shadow
    assert list(variant_config("HyperaTrainer_LR_3epochs_5iters").agents) == ["learning_rate"]
    assert variant_config("HyperaTrainer_Consensus").strategy == "consensus"
    assert not variant_config("HyperaTrainer_NoRollback").safeguards.rollback
    assert not variant_config("HyperaTrainer_NoTrust").safeguards.trust
    assert len(variant_config("HyperaTrainer").agents) == 6


def test_nnunets_own_lookup_finds_budgets_through_the_ext_trainer_folder(tmp_path):
    """nnU-Net's recursive_find_python_class, as nnUNetv2_train/predict/find_best_configuration call it on
    nnUNet_extTrainer, imports trainers/hypera_trainers.py as a top-level module and asks hasattr()."""
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    from hypera_nnunet.env import ext_trainer_dir

    folder = str(ext_trainer_dir())
    cls = recursive_find_python_class(folder, "HyperaTrainer_Consensus_2epochs_5iters", None,
                                      cleanup_imports_from_base_folder=True)
    assert cls is trainers.HyperaTrainer_Consensus_2epochs_5iters
    assert recursive_find_python_class(folder, "HyperaTrainer_3epochs_7iters", None,
                                       cleanup_imports_from_base_folder=True) is None


@pytest.mark.nnunet
def test_composes_with_nnunets_own_variant_through_the_mro(hippo, monkeypatch):
    """HyperaTrainer + nnUNetTrainerNoDA keeps NoDA's pipeline (no random transforms), with the agents'
    scaling still applied to what NoDA returns."""
    import torch
    from nnunetv2.training.nnUNetTrainer.variants.data_augmentation.nnUNetTrainerNoDA import nnUNetTrainerNoDA

    env, name, root = hippo
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(k, env[k])
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)

    class HyperaNoDA(trainers.HyperaTrainer, nnUNetTrainerNoDA):
        pass

    plans = json.loads((root / "pre" / name / "hyperaCPUPlans.json").read_text())
    ds = json.loads((root / "pre" / name / "dataset.json").read_text())

    def pipeline(cls):
        # nnU-Net's trainer pops "continue_training" from the plans it is given
        t = cls({**plans, "continue_training": False}, "3d_fullres", 2, ds, torch.device("cpu"))
        t.initialize()
        dl, _ = t.get_dataloaders()
        return [type(x).__name__ for x in dl.data_loader.transforms.transforms]

    nda, hypera = pipeline(HyperaNoDA), pipeline(trainers.HyperaTrainer)
    assert "RandomTransform" in hypera and "RandomTransform" not in nda and "SpatialTransform" not in nda
    assert os.environ.get("nnUNet_n_proc_DA") == "0"
