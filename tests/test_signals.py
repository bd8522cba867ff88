import math

import numpy as np
import pytest

from hypera_nnunet.control.signals import N_BASE_FEATURES, Signals


def test_features_exact_values():
    s = Signals(epoch=5, num_epochs=10, train_losses=[1.0, 0.8, 0.6], val_losses=[1.0, 1.0, 1.3],
                pseudo_dice=[0.2, 0.3, 0.5], ema_dice=[0.2, 0.21, 0.239], grad_norms=[1.0, 3.0], weight_norm=math.e)
    f = s.features({"lr": math.log(2.0)}, ("lr", "momentum"))
    assert f.shape == (N_BASE_FEATURES + 2,)
    expected = [0.5, 0.6, 1.3, 0.6 - 0.9, 1.3 - 1.0, 0.5, 0.239, 0.239 - 0.2, math.log1p(2.0), math.log1p(3.0),
                0.5, 0.1, 1.0, math.log(2.0), 0.0]
    assert f == pytest.approx(np.array(expected, dtype=np.float32), abs=1e-6)


def test_non_finite_values_are_zeroed_and_flagged():
    s = Signals(epoch=1, num_epochs=10, train_losses=[0.5, float("nan")], val_losses=[0.4, 0.3],
                pseudo_dice=[0.1, 0.2], ema_dice=[0.1, 0.11], grad_norms=[float("inf"), 2.0])
    f = s.features({}, ())
    assert not s.finite and f[12] == 0.0 and f[1] == 0.0 and np.isfinite(f).all()
    assert np.abs(Signals(0, 1, train_losses=[1e9]).features({}, ())).max() <= 10
