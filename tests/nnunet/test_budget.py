import inspect
import pickle

from hypera_nnunet.nnunet import trainers
from hypera_nnunet.nnunet.budget import val_iterations


def test_variant_names_follow_nnunet_and_pickle():
    for name in ("HyperaTrainer_5epochs", "HyperaTrainer_Shadow_10epochs_25iters", "nnUNetTrainer_20epochs_25iters",
                 "HyperaTrainer_LR_3epochs_5iters", "HyperaTrainer_Frozen"):
        cls = getattr(trainers, name)
        assert cls.__module__ == "hypera_nnunet.nnunet.trainers" and name in trainers.__all__
        assert pickle.loads(pickle.dumps(cls)) is cls
    assert not hasattr(trainers, "nnUNetTrainer_5epochs")  # nnU-Net's own, not shadowed


def test_init_signature_is_nnunets_explicit_one():
    # nnU-Net records __init__'s arguments with inspect.signature + locals(): *args would break it
    params = list(inspect.signature(trainers.HyperaTrainer_Shadow_10epochs_25iters.__init__).parameters)
    assert params == ["self", "plans", "configuration", "fold", "dataset_json", "device"]
    assert list(inspect.signature(trainers.HyperaTrainer.__init__).parameters) == params


def test_val_iterations_keep_nnunets_ratio():
    assert [val_iterations(i) for i in (5, 10, 25, 50, 250)] == [2, 2, 5, 10, 50]


def test_variant_configs():
    assert trainers.HyperaTrainer_Shadow.hypera_config_for_run(None).shadow
    assert list(trainers.HyperaTrainer_LR.hypera_config_for_run(None).agents) == ["learning_rate"]
    assert trainers.HyperaTrainer_Consensus.hypera_config_for_run(None).strategy == "consensus"
    assert not trainers.HyperaTrainer_NoRollback.hypera_config_for_run(None).safeguards.rollback
    assert len(trainers.HyperaTrainer.hypera_config.agents) == 6
