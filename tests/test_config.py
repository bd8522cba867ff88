import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hypera_nnunet.agents import AGENTS
from hypera_nnunet.cli import main
from hypera_nnunet.config import (
    HyperaConfig,
    changed_settings,
    config_from_dict,
    config_from_env,
    load_config,
    merge_config,
    run_config,
    variant_config,
)
from hypera_nnunet.errors import ConfigError
from hypera_nnunet.settings import (
    AgentSettings,
    ExplorationConfig,
    LearningConfig,
    NNUNetSettings,
    RewardConfig,
    SafeguardConfig,
    ScheduleConfig,
    TransferConfig,
)

SIX = ["learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization"]


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch):
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)
    monkeypatch.delenv("HYPERA_TRANSFER", raising=False)


def _file(tmp_path, values, name="c.json"):
    p = tmp_path / name
    p.write_text(json.dumps(values) if name.endswith(".json") else values)
    return p


def test_defaults_are_lr_and_loss_with_weighted_average():
    cfg = HyperaConfig()
    assert list(cfg.agents) == ["learning_rate", "loss"]
    assert cfg.strategy == "weighted_average" and not cfg.shadow


def test_settings_is_a_leaf_module():
    code = "import sys, hypera_nnunet.settings; print(sorted(m for m in sys.modules if m.startswith('hypera'))); " \
           "print(any(m.startswith(('torch', 'numpy')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["['hypera_nnunet', 'hypera_nnunet.errors', 'hypera_nnunet.settings']", "False"]


def test_json_and_yaml_files_give_the_same_config(tmp_path):
    values = {"agents": {"learning_rate": {"max_factor": 3.0}, "loss": {"deep_supervision": True}},
              "strategy": "priority", "seed": 7, "safeguards": {"rollback_dice_drop": 0.2}}
    j = _file(tmp_path, values)
    y = _file(tmp_path, "agents:\n  learning_rate: {max_factor: 3.0}\n  loss: {deep_supervision: true}\n"
                        "strategy: priority\nseed: 7\nsafeguards: {rollback_dice_drop: 0.2}\n", "c.yaml")
    a, b = load_config(j), load_config(y)
    assert a == b
    assert a.agents["learning_rate"].max_factor == 3.0 and a.agents["loss"].deep_supervision is True
    assert a.safeguards.rollback_dice_drop == 0.2 and a.seed == 7


# ---- the merge rule ---------------------------------------------------------------------------------
def test_merge_config_merges_mappings_and_replaces_lists_and_leaves_its_inputs_alone():
    base = {"learning": {"hidden": [64, 64], "gamma": 0.9}, "seed": 0, "shadow": True}
    override = {"learning": {"hidden": [8]}, "seed": 3, "save_every": None}
    assert merge_config(base, override) == {"learning": {"hidden": [8], "gamma": 0.9}, "seed": 3, "shadow": True,
                                            "save_every": None}
    assert base == {"learning": {"hidden": [64, 64], "gamma": 0.9}, "seed": 0, "shadow": True}
    assert override == {"learning": {"hidden": [8]}, "seed": 3, "save_every": None}


def test_merge_config_agents_list_replaces_mapping_merges_null_removes():
    base = {"agents": {"learning_rate": {"max_factor": 3.0, "share": 0.5}, "loss": {}}}
    assert merge_config(base, {"agents": ["optimization"]}) == {"agents": ["optimization"]}
    assert merge_config(base, {"agents": {"learning_rate": {"max_factor": 4.0}, "augmentation": {}}}) == \
        {"agents": {"learning_rate": {"max_factor": 4.0, "share": 0.5}, "loss": {}, "augmentation": {}}}
    assert merge_config(base, {"agents": {"loss": None}}) == {"agents": {"learning_rate": {"max_factor": 3.0,
                                                                                           "share": 0.5}}}
    assert merge_config({"agents": ["learning_rate", "loss"]}, {"agents": {"loss": None, "batch_size": {}}}) == \
        {"agents": {"learning_rate": {}, "batch_size": {}}}


def test_a_partial_file_overrides_the_variant_and_keeps_the_rest(tmp_path, monkeypatch):
    p = _file(tmp_path, "learning: {gradient_steps: 4}\n", "gs4.yaml")
    monkeypatch.setenv("HYPERA_CONFIG", str(p))
    full = run_config("HyperaTrainer")
    assert list(full.agents) == SIX and full.learning.gradient_steps == 4
    assert full.learning.batch_size == 32 and full.strategy == "weighted_average"
    shadow = run_config("HyperaTrainer_Shadow_10epochs_25iters")
    assert shadow.shadow is True and list(shadow.agents) == SIX and shadow.learning.gradient_steps == 4
    lr = run_config("HyperaTrainer_LR")
    assert list(lr.agents) == ["learning_rate"] and lr.learning.gradient_steps == 4
    monkeypatch.delenv("HYPERA_CONFIG")
    assert run_config("HyperaTrainer").learning.gradient_steps == 8
    assert run_config("HyperaTrainer", p).learning.gradient_steps == 4


def test_agents_in_a_file_replace_merge_or_remove(tmp_path):
    assert list(run_config("HyperaTrainer", _file(tmp_path, {"agents": ["loss", "learning_rate"]})).agents) == \
        ["loss", "learning_rate"]
    cfg = run_config("HyperaTrainer", _file(tmp_path, {"agents": {"learning_rate": {"max_factor": 3}}}))
    assert list(cfg.agents) == SIX and cfg.agents["learning_rate"].max_factor == 3.0
    assert cfg.agents["loss"].max_factor == 2.0
    cfg = run_config("HyperaTrainer_LRLoss", _file(tmp_path, {"agents": {"loss": None}}))
    assert list(cfg.agents) == ["learning_rate"]
    with pytest.raises(ConfigError) as e:
        run_config("HyperaTrainer_Loss", _file(tmp_path, {"agents": {"loss": None}}))
    assert str(e.value) == f"{tmp_path / 'c.json'}: 'agents' must be at least one agent, got {{}}"


def test_env_variable_merges_onto_the_variant_default(tmp_path, monkeypatch):
    p = _file(tmp_path, {"agents": {"optimization": {}}})
    default = HyperaConfig()
    assert config_from_env(default) is default
    monkeypatch.setenv("HYPERA_CONFIG", str(p))
    assert list(config_from_env(default).agents) == ["learning_rate", "loss", "optimization"]


def test_variants_and_transfer(monkeypatch):
    assert variant_config("HyperaTrainer_Priority_5epochs").strategy == "priority"
    assert variant_config("HyperaTrainer_NoTrust").safeguards.trust is False
    with pytest.raises(ConfigError) as e:
        variant_config("HyperaTrainer_Frozen")
    assert str(e.value) == ("HyperaTrainer_Frozen needs HYPERA_TRANSFER=/path/to/fold_X (or its hypera/policies.pt) "
                            "from an earlier HYPERA run.")
    with pytest.raises(ConfigError, match="^HyperaTrainer_WarmStart_10epochs needs HYPERA_TRANSFER="):
        run_config("HyperaTrainer_WarmStart_10epochs")
    listing = variant_config("HyperaTrainer_Frozen", for_run=False)
    assert (listing.transfer.mode, listing.transfer.source) == ("frozen", None)
    monkeypatch.setenv("HYPERA_TRANSFER", "/runs/fold_0")
    t = run_config("HyperaTrainer_WarmStart")
    assert (t.transfer.mode, t.transfer.source, list(t.agents)) == ("warm_start", "/runs/fold_0", SIX)
    with pytest.raises(ConfigError) as e:
        variant_config("nnUNetTrainer_5epochs")
    assert str(e.value) == ("'nnUNetTrainer_5epochs' is not a HYPERA trainer, so it has no HYPERA configuration "
                            "(`hypera-nnunet trainers` lists them)")


@pytest.mark.parametrize("trainer", ["HyperaTrainer", "HyperaTrainer_LR", "HyperaTrainer_Shadow",
                                     "HyperaTrainer_NoRollback"])
def test_config_round_trips_through_to_dict(trainer, tmp_path):
    cfg = run_config(trainer, _file(tmp_path, {"learning": {"hidden": [8, 4]}, "seed": 3,
                                               "agents": {"batch_size": {"min_batch_size": 1, "max_batch_size": 4}}}))
    again = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and list(again.agents) == list(cfg.agents)
    assert cfg.to_dict()["learning"]["hidden"] == [8, 4]


def test_direct_construction_parses_agent_mappings_and_checks_the_strategy():
    cfg = HyperaConfig(agents={"batch_size": {"max_batch_size": 4}, "learning_rate": AgentSettings(max_factor=3)})
    assert type(cfg.agents["learning_rate"]).__name__ == "LRSettings" and cfg.agents["learning_rate"].max_factor == 3
    assert cfg.agents["batch_size"].max_batch_size == 4 and cfg.replace(seed=2).agents == cfg.agents
    with pytest.raises(ConfigError, match="^unknown strategy 'vote'; choose one of weighted_average, priority, "
                                          "consensus$"):
        HyperaConfig(strategy="vote")


# ---- every field checked, one line naming file, key, value and range ----------------------------------
@pytest.mark.parametrize("values, message", [
    ({"agents": {"lr": {}}}, "unknown agent 'lr'; available: augmentation, batch_size, learning_rate, loss, "
                             "optimization, regularization"),
    ({"agents": {"learning_rate": {"max_factr": 2}}},
     "unknown setting(s) 'agents.learning_rate.max_factr'; known: every_n_iterations, max_factor, max_step, "
     "priority, share"),
    ({"safeguards": {"rollbak": True}}, "unknown setting(s) 'safeguards.rollbak'; known: explode_factor, "
     "explode_penalty, max_consecutive_rollbacks, nan_penalty, prior_weight, rollback, rollback_dice_drop, "
     "rollback_penalty, trust, trust_init, trust_min, trust_step, trust_window"),
    ({"strategy": "vote"}, "unknown strategy 'vote'; choose one of weighted_average, priority, consensus"),
    ({"shadow": "yes"}, "'shadow' must be true or false, got 'yes'"),
    ({"seed": "zero"}, "'seed' must be an integer in [0, 4294967295], got 'zero'"),
    ({"seed": True}, "'seed' must be an integer in [0, 4294967295], got True"),
    ({"transfer": {"mode": "frozen"}},
     "transfer.mode 'frozen' needs transfer.source (a policies.pt from an earlier run)"),
    ({"transfer": {"mode": "thaw", "source": "p"}}, "'transfer.mode' must be one of warm_start, frozen, got 'thaw'"),
    ({"agents": {"learning_rate": {"max_factor": 0}}}, "'agents.learning_rate.max_factor' must be a number > 1, got 0"),
    ({"agents": {"loss": {"max_factor": 0.5}}}, "'agents.loss.max_factor' must be a number > 1, got 0.5"),
    ({"agents": {"loss": {"max_factor": -3}}}, "'agents.loss.max_factor' must be a number > 1, got -3"),
    ({"agents": {"loss": {"max_step": -1}}}, "'agents.loss.max_step' must be a number > 0, got -1"),
    ({"agents": {"loss": {"share": 1.5}}}, "'agents.loss.share' must be a number in [0, 1], got 1.5"),
    ({"agents": {"loss": {"priority": 1.5}}}, "'agents.loss.priority' must be an integer, got 1.5"),
    ({"agents": {"loss": {"deep_supervision": 1}}}, "'agents.loss.deep_supervision' must be true or false, got 1"),
    ({"agents": {"learning_rate": {"every_n_iterations": -2}}},
     "'agents.learning_rate.every_n_iterations' must be an integer >= 0, got -2"),
    ({"agents": {"batch_size": {"min_batch_size": 0}}},
     "'agents.batch_size.min_batch_size' must be an integer >= 1, got 0"),
    ({"agents": {"batch_size": {"min_batch_size": 8, "max_batch_size": 4}}},
     "'agents.batch_size.min_batch_size' must be <= max_batch_size (4), got 8"),
    ({"agents": {"loss": 3}}, "'agents.loss' must be a mapping, got int"),
    ({"agents": "loss"}, "'agents' must be a list of agent names or a mapping of agent name -> settings, got 'loss'"),
    ({"agents": ["loss", "loss"]}, "'agents' lists 'loss' twice"),
    ({"agents": [1]}, "'agents' must be a list of agent names or a mapping of agent name -> settings, got [1]"),
    ({"save_every": "x"}, "'save_every' must be an integer >= 1 or null, got 'x'"),
    ({"save_every": 0}, "'save_every' must be an integer >= 1 or null, got 0"),
    ({"pause_after_epochs": -1}, "'pause_after_epochs' must be an integer >= 1 or null, got -1"),
    ({"pause_after_minutes": 0}, "'pause_after_minutes' must be a number > 0 or null, got 0"),
    ({"safeguards": {"trust_init": 5}}, "'safeguards.trust_init' must be in [trust_min, 1] = [0.25, 1], got 5.0"),
    ({"safeguards": {"trust_min": 0}}, "'safeguards.trust_min' must be a number in (0, 1], got 0"),
    ({"safeguards": {"trust_step": -0.1}}, "'safeguards.trust_step' must be a number >= 0, got -0.1"),
    ({"safeguards": {"trust_window": 0}}, "'safeguards.trust_window' must be an integer >= 1, got 0"),
    ({"safeguards": {"rollback_dice_drop": -1}}, "'safeguards.rollback_dice_drop' must be a number > 0, got -1"),
    ({"safeguards": {"max_consecutive_rollbacks": 0}},
     "'safeguards.max_consecutive_rollbacks' must be an integer >= 1, got 0"),
    ({"safeguards": {"nan_penalty": 1}}, "'safeguards.nan_penalty' must be a number <= 0, got 1"),
    ({"safeguards": {"explode_factor": 1}}, "'safeguards.explode_factor' must be a number > 1, got 1"),
    ({"safeguards": []}, "'safeguards' must be a mapping, got list"),
    ({"learning": {"gamma": 5}}, "'learning.gamma' must be a number in [0, 1), got 5"),
    ({"learning": {"gamma": 1}}, "'learning.gamma' must be a number in [0, 1), got 1"),
    ({"learning": {"batch_size": 0}}, "'learning.batch_size' must be an integer >= 1, got 0"),
    ({"learning": {"gradient_steps": 2.5}}, "'learning.gradient_steps' must be an integer >= 0, got 2.5"),
    ({"learning": {"learning_starts": 0}}, "'learning.learning_starts' must be an integer >= 1, got 0"),
    ({"learning": {"buffer_size": 0}}, "'learning.buffer_size' must be an integer >= 1, got 0"),
    ({"learning": {"lr": 0}}, "'learning.lr' must be a number > 0, got 0"),
    ({"learning": {"hidden": "abc"}}, "'learning.hidden' must be a non-empty list of integers each >= 1, got 'abc'"),
    ({"learning": {"hidden": []}}, "'learning.hidden' must be a non-empty list of integers each >= 1, got []"),
    ({"learning": {"hidden": [64, 0]}}, "'learning.hidden' must be a non-empty list of integers each >= 1, "
                                        "got [64, 0]"),
    ({"learning": {"init_log_std": float("nan")}}, "'learning.init_log_std' must be a finite number, got nan"),
    ({"exploration": {"explore_until": 0.9, "exploit_until": 0.5}},
     "'exploration.exploit_until' must be in [explore_until, 1] = [0.9, 1], got 0.5"),
    ({"exploration": {"explore_until": 1.5}}, "'exploration.explore_until' must be a number in [0, 1], got 1.5"),
    ({"exploration": {"exploit_noise": -1}}, "'exploration.exploit_noise' must be a number >= 0, got -1"),
    ({"exploration": {"entropy_end": float("inf")}}, "'exploration.entropy_end' must be a finite number, got inf"),
])
def test_bad_settings_name_the_file_the_key_the_value_and_the_range(tmp_path, values, message):
    p = _file(tmp_path, values, "bad.json")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: {message}"
    with pytest.raises(ConfigError) as e:  # the same check when merged onto a trainer's configuration
        run_config("HyperaTrainer", p)
    assert str(e.value) == f"{p}: {message}"


@pytest.mark.parametrize("text, message", [
    ("- learning_rate\n- loss\n", "the configuration must be a mapping of settings (agents, strategy, ...), got list"),
    ("3\n", "the configuration must be a mapping of settings (agents, strategy, ...), got int"),
    ("learning: {gamma: .nan}\n", "'learning.gamma' must be a number in [0, 1), got nan"),
    ("agents: [learning_rate]\nlearning: {gradient_steps: 4}\n1: 2\n",
     "unknown setting(s) '1'; known: agents, exploration, learning, nnunet, pause_after_epochs, pause_after_minutes, "
     "reward, safeguards, save_every, schedule, seed, shadow, store, strategy, tensorboard, transfer"),
])
def test_bad_yaml_shapes_are_one_line_naming_the_file(tmp_path, text, message):
    p = _file(tmp_path, text, "bad.yaml")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: {message}"


def test_agents_as_a_list_works_in_a_file(tmp_path):
    cfg = load_config(_file(tmp_path, "agents: [batch_size, learning_rate]\n", "c.yaml"))
    assert list(cfg.agents) == ["batch_size", "learning_rate"] and cfg.agents["batch_size"].min_batch_size == 2


def test_settings_check_themselves_when_built_in_code():
    with pytest.raises(ConfigError, match=r"^'gamma' must be a number in \[0, 1\), got 5$"):
        LearningConfig(gamma=5)
    assert SafeguardConfig(trust_init=1).trust_init == 1.0 and LearningConfig(hidden=[8]).hidden == (8,)


def test_missing_and_unparsable_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == (f"HYPERA config file {p} could not be parsed: Expecting property name enclosed in "
                            "double quotes: line 1 column 2 (char 1)")
    y = tmp_path / "broken.yaml"
    y.write_text("a: [1,\n")
    with pytest.raises(ConfigError) as e:
        load_config(y)
    assert str(e.value).startswith(f"HYPERA config file {y} could not be parsed: ") and "\n" not in str(e.value)


def test_changed_settings_lists_what_differs_from_the_defaults(tmp_path):
    cfg = run_config("HyperaTrainer_Shadow", _file(tmp_path, {"learning": {"gradient_steps": 4},
                                                              "agents": {"loss": {"max_factor": 3}}}))
    assert changed_settings(cfg) == {"agents.loss.max_factor": (3.0, 2.0), "shadow": (True, False),
                                     "learning.gradient_steps": (4, 8)}


# ---- check-config ------------------------------------------------------------------------------------
def test_check_config_prints_the_effective_configuration(tmp_path, capsys):
    p = _file(tmp_path, "learning: {gradient_steps: 4}\n", "gs4.yaml")
    assert main(["check-config", str(p)]) == 0
    assert capsys.readouterr().out == (
        f"{p} on HyperaTrainer: OK\n"
        "  agents (6): learning_rate, loss, batch_size, augmentation, regularization, optimization\n"
        "  settings that differ from the defaults:\n"
        f"    learning.gradient_steps = 4  (default 8; set by {p})\n")
    assert main(["check-config", str(p), "-tr", "HyperaTrainer_Shadow"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[3:] == ["    shadow = true  (default false; set by HyperaTrainer_Shadow)",
                       f"    learning.gradient_steps = 4  (default 8; set by {p})"]
    empty = _file(tmp_path, {}, "empty.json")
    assert main(["check-config", str(empty), "-tr", "HyperaTrainer_LR"]) == 0
    assert capsys.readouterr().out == (f"{empty} on HyperaTrainer_LR: OK\n  agents (1): learning_rate\n"
                                       "  all other settings are the defaults\n")


def test_check_config_errors_are_one_line(tmp_path, capsys):
    p = _file(tmp_path, {"agents": ["learning_rate"], "learning": {"gamma": 5}})
    assert main(["check-config", str(p)]) == 2
    assert capsys.readouterr().err == f"hypera-nnunet: error: {p}: 'learning.gamma' must be a number in [0, 1), " \
                                      "got 5\n"
    assert main(["check-config", str(p), "-tr", "nnUNetTrainer"]) == 2
    assert capsys.readouterr().err == ("hypera-nnunet: error: 'nnUNetTrainer' is not a HYPERA trainer, so it has no "
                                       "HYPERA configuration (`hypera-nnunet trainers` lists them)\n")


def test_docs_list_every_setting_with_its_range():
    """docs/configuration.md has a row per setting whose range is the rule's (cross-field rules in words)."""
    rows = {}
    for line in (Path(__file__).parents[1] / "docs" / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = cells[2]
    documented_in_words = {"strategy", "safeguards.trust_init", "exploration.exploit_until", "transfer.source",
                           "transfer.mode", "agents.batch_size.min_batch_size"}
    expected = {}
    for prefix, cls in (("", HyperaConfig), ("safeguards.", SafeguardConfig), ("exploration.", ExplorationConfig),
                        ("learning.", LearningConfig), ("transfer.", TransferConfig), ("nnunet.", NNUNetSettings),
                        ("reward.", RewardConfig), ("schedule.", ScheduleConfig), ("agents.<any>.", AgentSettings)):
        expected.update({prefix + f.name: f.metadata["rule"] for f in dataclasses.fields(cls) if "rule" in f.metadata})
    common = {f.name for f in dataclasses.fields(AgentSettings)}
    for name, agent in AGENTS.items():
        expected.update({f"agents.{name}.{f.name}": f.metadata["rule"]
                         for f in dataclasses.fields(agent.Settings) if f.name not in common})
    assert set(rows) == set(expected) | {"agents"}
    for key, rule in expected.items():
        if key not in documented_in_words:
            assert rows[key].startswith(rule.describe()), (key, rows[key], rule.describe())
