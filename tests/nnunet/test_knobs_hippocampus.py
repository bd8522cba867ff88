"""The batch-size and augmentation knobs really change what nnU-Net's dataloader yields."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.nnunet


@pytest.fixture
def trainer(hippo, monkeypatch):
    env, name, root = hippo
    for k in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA"):
        monkeypatch.setenv(k, env[k])
    from hypera_nnunet.nnunet.trainers import HyperaTrainer_1epochs_5iters

    plans = json.loads((root / "pre" / name / "hyperaCPUPlans.json").read_text())
    plans["continue_training"] = False
    ds = json.loads((root / "pre" / name / "dataset.json").read_text())
    t = HyperaTrainer_1epochs_5iters(plans, "3d_fullres", 1, ds, torch.device("cpu"))
    t.initialize()
    t.dataloader_train, t.dataloader_val = t.get_dataloaders()
    return t


def _random_transforms(trainer):
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    pipeline = trainer.dataloader_train.data_loader.transforms
    return [t for t in pipeline.transforms if isinstance(t, RandomTransform)]


def test_batch_size_knob_changes_the_batches(trainer):
    from hypera_nnunet.nnunet.knobs import NNUNetKnobs

    knobs = NNUNetKnobs(trainer, min_batch_size=1, max_batch_size=4)
    assert next(trainer.dataloader_train)["data"].shape[0] == 2  # the reduced plans' batch size
    assert knobs.apply("batch_size", math.log(2.0)) == pytest.approx(math.log(2.0))
    assert next(trainer.dataloader_train)["data"].shape[0] == 4
    assert knobs.apply("batch_size", math.log(8.0)) == pytest.approx(math.log(2.0))  # memory bound: 4
    assert knobs.apply("batch_size", math.log(0.4)) == pytest.approx(math.log(0.5))  # rounded to 1
    assert next(trainer.dataloader_train)["data"].shape[0] == 1


def test_augmentation_knobs_change_the_pipeline_and_the_batches(trainer):
    from hypera_nnunet.nnunet.knobs import NNUNetKnobs

    knobs = NNUNetKnobs(trainer)
    base = [t.apply_probability for t in _random_transforms(trainer)]
    assert base == [0.1, 0.2, 0.15, 0.15, 0.25, 0.1, 0.3]  # nnU-Net's defaults
    knobs.apply("aug_prob", math.log(0.5))
    assert [t.apply_probability for t in _random_transforms(trainer)] == pytest.approx([p / 2 for p in base])
    # within the rebuild tolerance: the pipeline is unchanged and the executed value is the built one
    assert knobs.apply("aug_prob", math.log(0.5) + 0.01) == pytest.approx(math.log(0.5))
    # back to nnU-Net's own value (agents switched off) always rebuilds, even from within the tolerance
    assert knobs.apply("aug_prob", 0.03) == pytest.approx(0.03)  # 0.5 -> 1.03: a rebuild
    assert knobs.apply("aug_prob", 0.0) == 0.0
    assert [t.apply_probability for t in _random_transforms(trainer)] == base

    def batch_std(n=6):
        np.random.seed(0)
        torch.manual_seed(0)
        return float(np.mean([next(trainer.dataloader_train)["data"].std().item() for _ in range(n)]))

    knobs.apply("aug_prob", -20.0)
    knobs.apply("aug_strength", -20.0)
    calm = batch_std()
    knobs.apply("aug_prob", 3.0)
    knobs.apply("aug_strength", 2.0)
    noise = [t.transform for t in _random_transforms(trainer) if type(t.transform).__name__ == "GaussianNoiseTransform"]
    assert noise[0].noise_variance == pytest.approx((0, 0.1 * math.exp(2.0)))
    assert all(t.apply_probability == 1.0 for t in _random_transforms(trainer))
    assert batch_std() > 1.05 * calm
