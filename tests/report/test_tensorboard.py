"""TensorBoard scalars of a hand-made decision record, read back from the event file."""

from __future__ import annotations

import pytest
from report_fixtures import decision

from hypera_nnunet.nnunet.tensorboard import TensorBoardLog, record_scalars


def test_record_scalars_exact():
    s = record_scalars(decision(2))  # nesterov off in epoch 2
    assert s["knob/lr"] == 1.35 and s["knob/ce_dice_balance"] == 0.9 and s["knob/nesterov"] == 0.0
    assert s["reward/learning_rate"] == 0.2 and s["trust/optimization"] == pytest.approx(0.46)
    assert s["dice/pseudo"] == pytest.approx(0.2) and s["dice/ema"] == pytest.approx(0.1) and s["rollback"] == 0.0
    s4 = record_scalars(decision(4))  # NaN pseudo-Dice is left out; the rollback is 1
    assert "dice/pseudo" not in s4 and s4["rollback"] == 1.0 and s4["knob/nesterov"] == 1.0


def test_event_file_holds_the_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = TensorBoardLog(tmp_path)
    for e in range(3):
        tb.write(decision(e))
    tb.close()
    acc = EventAccumulator(str(tmp_path / "hypera" / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert tags == {"knob/lr", "knob/ce_dice_balance", "knob/nesterov", "reward/learning_rate", "reward/loss",
                    "reward/optimization", "trust/learning_rate", "trust/loss", "trust/optimization", "dice/pseudo",
                    "dice/ema", "rollback"}
    assert [(x.step, round(x.value, 6)) for x in acc.Scalars("knob/lr")] == [(0, 1.0), (1, 1.2), (2, 1.35)]
    assert [x.value for x in acc.Scalars("knob/nesterov")] == [1.0, 1.0, 0.0]
    assert [round(x.value, 6) for x in acc.Scalars("reward/learning_rate")] == [0.0, 0.1, 0.2]
    assert [round(x.value, 6) for x in acc.Scalars("dice/pseudo")] == [0.0, 0.1, 0.2]


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    import sys

    from hypera_nnunet.errors import HyperaError

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(HyperaError) as e:
        TensorBoardLog(tmp_path)
    assert str(e.value) == "tensorboard: true needs the tensorboard package: pip install 'hypera-nnunet[tensorboard]'"
