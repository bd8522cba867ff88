import pytest
import torch

from hypera_nnunet.config import SafeguardConfig
from hypera_nnunet.control.safeguards import RollbackGuard, TrustTracker


def test_trust_grows_with_a_positive_record_and_halves_on_rollback():
    t = TrustTracker(SafeguardConfig(trust_init=0.5, trust_step=0.1, trust_window=3, trust_min=0.2))
    assert [t.update(r) for r in (1.0, 1.0)] == [0.5, 0.5]  # window not full yet
    assert t.update(1.0) == pytest.approx(0.6)
    assert t.update(-5.0) == pytest.approx(0.5)  # mean(1, 1, -5) < 0
    assert t.penalise() == pytest.approx(0.25)
    assert t.penalise() == pytest.approx(0.2)  # floor
    off = TrustTracker(SafeguardConfig(trust=False))
    assert off.level == 1.0 and off.update(-1) == 1.0 and off.penalise() == 1.0


def test_rollback_guard_reasons_and_restore():
    net = torch.nn.Linear(3, 1)
    g = RollbackGuard({"net": net}, SafeguardConfig(rollback_dice_drop=0.1))
    assert g.reason(True, 0.5) is None
    g.accept(0.5)
    assert g.reason(True, 0.41) is None
    assert "fell more than 0.1" in g.reason(True, 0.39)
    assert g.reason(False, 0.6).startswith("non-finite")
    assert g.reason(True, float("nan")) == "non-finite pseudo-Dice"
    saved = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    assert g.restore() and torch.equal(net.weight, saved) and g.rollbacks == 1
    # the snapshot is a copy, not an alias of the live tensors
    with torch.no_grad():
        net.weight.mul_(0)
    assert g.restore() and torch.equal(net.weight, saved)


def test_restore_without_snapshot_does_nothing():
    assert RollbackGuard({"net": torch.nn.Linear(1, 1)}, SafeguardConfig()).restore() is False
