"""PhaseTiming on a hand-made trainer loop with a fake clock: every part gets exactly its seconds, the loaders keep
their class (nnU-Net and the pipeline test it), and nothing outside the epoch loop is counted."""

from __future__ import annotations

import pytest

from hypera_nnunet.errors import HyperaError
from hypera_nnunet.nnunet import plotting, timing


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def wait(self, s):
        self.t += s


class Loader:
    def __init__(self, clock, cost):
        self.clock, self.cost, self.n = clock, cost, 0

    def __iter__(self):
        return self

    def __next__(self):
        self.clock.wait(self.cost)
        self.n += 1
        return self.n


class Logger:
    def __init__(self, clock):
        self.clock = clock

    def plot_progress_png(self, folder):
        self.clock.wait(0.25)


class Base:
    """The hooks of nnU-Net's trainer that PhaseTiming wraps, with known costs."""

    def __init__(self, clock):
        self.clock, self.logger, self.ended = clock, Logger(clock), []

    def get_dataloaders(self):
        return Loader(self.clock, 1.0), Loader(self.clock, 0.5)

    def on_train_start(self):
        self.dataloader_train, self.dataloader_val = self.get_dataloaders()

    def on_epoch_start(self):
        self.clock.wait(0.125)

    def train_step(self, batch):
        self.clock.wait(2.0)
        return {"batch": batch}

    def validation_step(self, batch):
        self.clock.wait(0.75)
        return {"batch": batch}

    def save_checkpoint(self, filename):
        self.clock.wait(4.0)

    def on_epoch_end(self):
        self.save_checkpoint("best")
        self.logger.plot_progress_png(".")
        self.clock.wait(0.0625)

    def on_train_end(self):
        self.ended.append((type(self.dataloader_train), type(self.dataloader_val)))
        self.save_checkpoint("final")


class Trainer(timing.PhaseTiming, Base):
    pass


def _epoch(tr, steps=3, val_steps=2):
    tr.on_epoch_start()
    for _ in range(steps):
        tr.train_step(next(tr.dataloader_train))
    for _ in range(val_steps):
        tr.validation_step(next(tr.dataloader_val))
    tr.on_epoch_end()


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(timing, "perf_counter", c)
    return c


def test_each_part_gets_exactly_its_seconds(clock):
    tr = Trainer(clock)
    tr.on_train_start()
    clock.wait(100.0)  # before the first epoch: not counted
    _epoch(tr)
    assert tr.last_epoch_phases == {"train_data": 3.0, "train_step": 6.0, "val_data": 1.0, "val_step": 1.5,
                                    "checkpoint": 4.0, "plot": 0.25, "rest": 0.1875, "wall": 15.9375}
    _epoch(tr, steps=1, val_steps=0)  # the next epoch starts from zero
    assert tr.last_epoch_phases == {"train_data": 1.0, "train_step": 2.0, "val_data": 0.0, "val_step": 0.0,
                                    "checkpoint": 4.0, "plot": 0.25, "rest": 0.1875, "wall": 7.4375}


def test_the_loaders_keep_their_class_and_get_it_back(clock):
    tr = Trainer(clock)
    tr.on_train_start()
    assert isinstance(tr.dataloader_train, Loader) and type(tr.dataloader_train) is not Loader
    assert [next(tr.dataloader_train) for _ in range(3)] == [1, 2, 3]  # the loader's own batches
    tr.on_train_end()
    assert tr.ended == [(Loader, Loader)]  # nnU-Net's on_train_end sees its own classes again


def test_loaders_rebuilt_by_an_agent_are_timed_too(clock):
    tr = Trainer(clock)
    tr.on_train_start()
    tr.dataloader_train, tr.dataloader_val = tr.get_dataloaders()  # what rebuild_dataloaders does
    _epoch(tr, steps=2, val_steps=1)
    assert tr.last_epoch_phases["train_data"] == 2.0 and tr.last_epoch_phases["val_data"] == 0.5


def test_a_checkpoint_outside_an_epoch_is_not_counted(clock):
    tr = Trainer(clock)
    tr.on_train_start()
    _epoch(tr, steps=1, val_steps=0)
    before = dict(tr.last_epoch_phases)
    tr.on_train_end()  # the final checkpoint (4 s) belongs to no epoch
    assert tr.last_epoch_phases == before


class ThinTrainer(plotting.ThinPlots, timing.PhaseTiming, Base):
    num_epochs = 5


def test_thinned_plots_every_n_epochs_and_the_last(clock, monkeypatch):
    monkeypatch.setenv("HYPERA_PLOT_EVERY", "2")
    tr = ThinTrainer(clock)
    tr.on_train_start()
    plots = []
    for e in range(5):
        tr.current_epoch = e
        _epoch(tr, steps=1, val_steps=0)
        plots.append(tr.last_epoch_phases["plot"])
    assert plots == [0.0, 0.25, 0.0, 0.25, 0.25]  # after epochs 1 and 3 (every 2nd) and 4 (the last)


@pytest.mark.parametrize("value", ["0", "x", "-2"])
def test_a_bad_plot_interval_is_one_line(value, monkeypatch):
    monkeypatch.setenv("HYPERA_PLOT_EVERY", value)
    with pytest.raises(HyperaError, match=f"HYPERA_PLOT_EVERY='{value}': expected an integer >= 1"):
        plotting.plot_every()
