"""The search space file: parsed into Optuna distributions, and every mistake one line naming the file and key."""

from __future__ import annotations

import json

import pytest

from hypera_nnunet.errors import ConfigError
from hypera_nnunet.search.space import load_space, parse_space

BASE = {"objective": "curve", "fidelity": {"min_epochs": 2, "max_epochs": 18},
        "params": {"nnunet.initial_lr": {"low": 0.001, "high": 0.1, "log": True},
                   "nnunet.batch_size": {"type": "int", "low": 2, "high": 8, "step": 2},
                   "learning.gradient_steps": {"choices": [2, 4, 8]}}}


def test_a_space_becomes_distributions_and_trial_configurations():
    pytest.importorskip("optuna")
    s = parse_space(BASE, "s.yaml")
    d = s.distributions()
    assert (d["nnunet.initial_lr"].low, d["nnunet.initial_lr"].high, d["nnunet.initial_lr"].log) == (0.001, 0.1, True)
    assert (d["nnunet.batch_size"].low, d["nnunet.batch_size"].high, d["nnunet.batch_size"].step) == (2, 8, 2)
    assert d["learning.gradient_steps"].choices == (2, 4, 8)
    cfg = s.trial_config({"nnunet.initial_lr": 0.01, "nnunet.batch_size": 4, "learning.gradient_steps": 8})
    # the fidelity: epochs trained, the poly schedule pinned to the largest budget, a checkpoint every epoch
    assert cfg == {"nnunet": {"initial_lr": 0.01, "batch_size": 4, "epochs": 18, "schedule_epochs": 18},
                   "learning": {"gradient_steps": 8}, "save_every": 1}
    assert s.trial_config({"nnunet.initial_lr": 0.01}, epochs=6)["nnunet"]["epochs"] == 6
    # the export carries no budget: the protocol (or nnUNetv2_train's trainer) sets it
    assert s.export_config({"nnunet.initial_lr": 0.01, "nnunet.batch_size": 4, "learning.gradient_steps": 8}) == \
        {"nnunet": {"initial_lr": 0.01, "batch_size": 4}, "learning": {"gradient_steps": 8}}


def test_the_space_file_is_read_from_yaml(tmp_path):
    p = tmp_path / "space.yaml"
    p.write_text("objective: curve\nfidelity: {max_epochs: 9}\nparams:\n  nnunet.momentum: {low: 0.9, high: 0.99}\n")
    s = load_space(p)
    assert (s.min_epochs, s.max_epochs, s.params[0].key, s.params[0].low) == (1, 9, "nnunet.momentum", 0.9)


@pytest.mark.parametrize("change, message", [
    ({"params": {"nnunet.inital_lr": {"low": 0.001, "high": 0.1}}}, "unknown setting(s) 'nnunet.inital_lr'"),
    ({"params": {"nnunet.momentum": {"low": 0.9, "high": 1.5}}}, "'nnunet.momentum' must be"),
    ({"params": {"nnunet.initial_lr": {"low": 0.1, "high": 0.01}}}, "low (0.1) must be below high (0.01)"),
    ({"params": {"nnunet.initial_lr": {"low": 0, "high": 0.1, "log": True}}}, "a log scale needs low > 0"),
    ({"params": {"nnunet.batch_size": {"type": "int", "low": 2.5, "high": 8}}}, "'params.nnunet.batch_size.low' must "
                                                                                 "be an integer"),
    ({"params": {"nnunet.initial_lr": {"low": 0.001, "hihg": 0.1}}}, "unknown key(s) ['hihg']"),
    ({"params": {"learning.gradient_steps": {"choices": []}}}, "must be a non-empty list"),
    ({"params": {"nnunet.epochs": {"type": "int", "low": 1, "high": 5}}}, "set by the search itself"),
    ({"fixed": {"nnunet": {"schedule_epochs": 3}}}, "'fixed.nnunet.schedule_epochs' is set by the search"),
    ({"fidelity": {"min_epochs": 20, "max_epochs": 10}}, "must not exceed max_epochs"),
    ({"trainer": "HyperaTrainer_10epochs"}, "the search sets the budget"),
    ({"objective": "nnunet"}, "'dataset' is missing"),
    ({"paramz": {}}, "unknown key(s) ['paramz']"),
    ({"params": {"learning.gradient_steps": {"choices": [2, -1]}}}, "gradient_steps"),
])
def test_bad_spaces_are_one_line_naming_file_and_key(change, message):
    with pytest.raises(ConfigError) as e:
        parse_space({**BASE, **change}, "space.yaml")
    text = str(e.value)
    assert text.startswith("space.yaml: ") and message in text and "\n" not in text


def test_a_missing_or_unparsable_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(BASE)[:-3])
    with pytest.raises(ConfigError, match="bad.json could not be parsed"):
        load_space(bad)
