"""nnU-Net's side of the experience store: a run's identity, the baselines' curves, the reward's reference.

A seeded ``nnUNetTrainer`` run (:class:`StoreBaseline`, a base of the ``nnUNetTrainer_<E>epochs_<I>iters``
baselines) writes its pseudo-Dice EMA curve and final Dice to the store named by ``$HYPERA_STORE``. A HYPERA run
with ``reward.counterfactual`` finds the curve of its own (dataset, plans, configuration, budget, fold, seed)
there (:func:`find_reference`). Runs made before the store existed are added with ``hypera-nnunet agents
add-baseline FOLD_DIR...`` (:func:`identity_of_fold`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.store import ExperienceStore, store_path

NNUNET_ITERATIONS = 250  # nnU-Net's iterations per epoch, for a budget name without _<I>iters


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def _fingerprint(path: Path) -> str | None:
    try:
        return _hash(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def run_identity(trainer) -> dict:
    """What a seeded curve of ``trainer`` depends on (the store's baseline key fields), and its trainer name."""
    pm = trainer.plans_manager
    return {"dataset": pm.dataset_name,
            "fingerprint": _fingerprint(Path(trainer.preprocessed_dataset_folder_base) / "dataset_fingerprint.json"),
            "plans": pm.plans_name, "plans_hash": _hash(trainer.configuration_manager.configuration),
            "configuration": trainer.configuration_name, "fold": trainer.fold,
            "seed": getattr(trainer, "hypera_seed", None), "num_epochs": int(trainer.num_epochs),
            "iterations": int(trainer.num_iterations_per_epoch), "trainer": type(trainer).__name__}


def outcome_of(fold_dir: Path) -> dict | None:
    """nnU-Net's final validation of a fold (``validation/summary.json``): Dice per class, foreground mean."""
    path = Path(fold_dir) / "validation" / "summary.json"
    if not path.is_file():
        return None
    try:
        s = json.loads(path.read_text())
        return {"foreground_mean": float(s["foreground_mean"]["Dice"]),
                "dice_per_class": {str(k): float(v["Dice"]) for k, v in s["mean"].items()}}
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HyperaError(f"{path}: not nnU-Net's summary.json ({e})") from None


def find_reference(store: Path | None, identity: dict) -> tuple[list[float] | None, str]:
    """The counterfactual reward's reference curve and a line saying what it is."""
    if store is None:
        return None, "none: reward.counterfactual is set but no store is given (store: or $HYPERA_STORE); the " \
                     "plain change of the pseudo-Dice EMA"
    st = ExperienceStore(store)
    if identity.get("seed") is not None:
        b = st.baseline(identity)
        if b is not None:
            return b["ema_fg_dice"], f"baseline {b['key']} ({b.get('trainer')}, fold {identity['fold']}, seed " \
                                     f"{identity['seed']})"
    ref = st.reference_curve(identity)
    if ref is not None:
        curve, n = ref
        return curve, f"reference curve: the mean of {n} stored baseline(s) of other folds or seeds (none of this " \
                      f"fold and seed{'' if identity.get('seed') is not None else ': the run is not seeded'})"
    return None, f"none: {store} holds no baseline of this dataset, plans, configuration and budget; the plain " \
                 "change of the pseudo-Dice EMA"


def identity_of_fold(fold_dir: Path) -> tuple[dict, list[float]]:
    """The identity and pseudo-Dice EMA curve of a finished nnU-Net fold folder (``checkpoint_final.pth``; the
    seed from HYPERA's checkpoint extras)."""
    import torch
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from hypera_nnunet.nnunet.budget import parse_budget
    from hypera_nnunet.nnunet.checkpoint import load_agent_state

    fold_dir = Path(fold_dir)
    ckpt_path = fold_dir / "checkpoint_final.pth"
    if not ckpt_path.is_file():
        raise HyperaError(f"{ckpt_path}: missing (not a finished nnU-Net fold)")
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        init = ckpt["init_args"]
        curve = [float(x) for x in ckpt["logging"]["ema_fg_dice"]]
        trainer = ckpt["trainer_name"]
    except Exception as e:  # noqa: BLE001 - a damaged or foreign file: one line naming it
        raise HyperaError(f"{ckpt_path}: not a readable nnU-Net checkpoint ({type(e).__name__}: {e})") from None
    extras = load_agent_state(ckpt_path, int(ckpt.get("current_epoch", len(curve))))
    seed = ((extras or {}).get("rng") or {}).get("seed")
    base = fold_dir.parent
    pm = PlansManager(init["plans"])
    budget = parse_budget(trainer)
    if budget is None:
        raise HyperaError(f"{ckpt_path}: trainer {trainer} names no budget (nnUNetTrainer_<E>epochs_<I>iters)")
    identity = {"dataset": pm.dataset_name, "fingerprint": _fingerprint(base / "dataset_fingerprint.json"),
                "plans": pm.plans_name,
                "plans_hash": _hash(pm.get_configuration(init["configuration"]).configuration),
                "configuration": init["configuration"], "fold": init["fold"], "seed": seed,
                "num_epochs": budget.epochs, "iterations": NNUNET_ITERATIONS if budget.iters is None else budget.iters,
                "trainer": trainer}
    return identity, curve


class StoreBaseline:
    """Mixin: a seeded run of nnU-Net's own trainer writes its curve to ``$HYPERA_STORE`` after its validation."""

    def perform_actual_validation(self, save_probabilities: bool = False):
        super().perform_actual_validation(save_probabilities)
        store = store_path(None)
        if store is None or self.local_rank != 0 or getattr(self, "hypera_seed", None) is None:
            return
        curve = [float(x) for x in self.logger.local_logger.my_fantastic_logging.get("ema_fg_dice", [])]
        try:
            path = ExperienceStore(store).write_baseline(run_identity(self), curve, outcome_of(self.output_folder),
                                                         str(self.output_folder))
        except HyperaError as e:
            self.print_to_log_file(f"HYPERA store: the baseline was not written: {e}")
            return
        self.print_to_log_file(f"HYPERA store: baseline curve written to {path}")
