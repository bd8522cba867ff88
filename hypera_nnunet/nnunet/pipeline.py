"""nnU-Net's data pipeline under the agents: scaling the augmentation, and rebuilding the dataloaders.

The trainer's ``get_training_transforms`` (through ``super()``, so nnU-Net's own variants such as
``nnUNetTrainerNoDA`` keep their pipeline) passes nnU-Net's transforms through :func:`scale_transforms`
with the augmentation knobs' multipliers; :func:`rebuild_dataloaders` makes a new batch size or
augmentation take effect.
"""

from __future__ import annotations

from time import time


def rebuild_dataloaders(trainer, reason: str = "batch_size") -> None:
    """Make a new batch size or augmentation take effect.

    With nnU-Net's single-process loader (``nnUNet_n_proc_DA=0``) a new augmentation only swaps the
    transform pipeline in place. Otherwise the dataloaders are restarted, because worker processes hold
    copies of the pipeline; that costs a few seconds, so the augmentation knobs only rebuild when their
    value moves by more than their tolerance.
    """
    from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

    if trainer.dataloader_train is None:
        return
    t0 = time()
    inner = getattr(trainer.dataloader_train, "data_loader", None)
    args = getattr(trainer, "_hypera_tr_args", None)
    if reason == "augmentation" and isinstance(trainer.dataloader_train, SingleThreadedAugmenter) and \
            hasattr(inner, "transforms") and args is not None:
        inner.transforms = trainer.get_training_transforms(*args[0], **args[1])
    else:
        for dl in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(dl, "_finish"):
                dl._finish()
        trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.hypera_rebuild_s = getattr(trainer, "hypera_rebuild_s", 0.0) + time() - t0


def scale_transforms(transform, prob: float, strength: float):
    """Scale probabilities and amplitudes of nnU-Net's batchgeneratorsv2 training pipeline in place.

    ``prob`` multiplies ``RandomTransform.apply_probability`` and the spatial transform's
    ``p_rotation``/``p_scaling`` (clipped to [0, 1]). ``strength`` scales ranges towards identity:
    noise variance and blur sigma upper bounds, brightness/contrast/gamma ranges around 1, the
    scaling range around 1 and the rotation angles. Returns the transform.
    """
    from batchgeneratorsv2.transforms.intensity.contrast import BGContrast
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.random import RandomTransform

    def around_one(r):
        if isinstance(r, BGContrast):
            r.contrast_range = around_one(r.contrast_range)
            return r
        if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
            lo, hi = r
            return (max(0.05, 1 - (1 - lo) * strength), 1 + (hi - 1) * strength)
        return r

    def upper(r):
        if isinstance(r, (tuple, list)) and len(r) == 2 and all(isinstance(v, (int, float)) for v in r):
            return (r[0], r[0] + (r[1] - r[0]) * strength)
        return r

    def visit(t):
        if isinstance(t, RandomTransform):
            t.apply_probability = float(min(1.0, t.apply_probability * prob))
            visit(t.transform)
            return
        if isinstance(t, SpatialTransform):
            t.p_rotation = float(min(1.0, t.p_rotation * prob))
            t.p_scaling = float(min(1.0, t.p_scaling * prob))
            t.scaling = around_one(t.scaling)
            if isinstance(t.rotation, (tuple, list)) and len(t.rotation) == 2:
                t.rotation = (t.rotation[0] * strength, t.rotation[1] * strength)
        for attr in ("noise_variance", "blur_sigma"):
            if hasattr(t, attr):
                setattr(t, attr, upper(getattr(t, attr)))
        for attr in ("multiplier_range", "contrast_range", "gamma"):
            if hasattr(t, attr):
                setattr(t, attr, around_one(getattr(t, attr)))
        for child in getattr(t, "transforms", []) or []:
            visit(child)

    visit(transform)
    return transform
