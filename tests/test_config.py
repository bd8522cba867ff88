import json

import pytest

from hypera_nnunet.config import HyperaConfig, config_from_dict, config_from_env, load_config
from hypera_nnunet.errors import ConfigError


def test_defaults_are_lr_and_loss_with_weighted_average():
    cfg = HyperaConfig()
    assert list(cfg.agents) == ["learning_rate", "loss"]
    assert cfg.strategy == "weighted_average" and not cfg.shadow


def test_json_and_yaml_files_give_the_same_config(tmp_path):
    values = {"agents": {"learning_rate": {"max_factor": 3.0}, "loss": {"deep_supervision": True}},
              "strategy": "priority", "seed": 7, "safeguards": {"rollback_dice_drop": 0.2}}
    j = tmp_path / "c.json"
    j.write_text(json.dumps(values))
    y = tmp_path / "c.yaml"
    y.write_text("agents:\n  learning_rate: {max_factor: 3.0}\n  loss: {deep_supervision: true}\n"
                 "strategy: priority\nseed: 7\nsafeguards: {rollback_dice_drop: 0.2}\n")
    a, b = load_config(j), load_config(y)
    assert a == b
    assert a.agents["learning_rate"].max_factor == 3.0 and a.agents["loss"].deep_supervision is True
    assert a.safeguards.rollback_dice_drop == 0.2 and a.seed == 7


@pytest.mark.parametrize("values, needle", [
    ({"agents": {"lr": {}}}, "unknown agent 'lr'"),
    ({"agents": {"learning_rate": {"max_factr": 2}}}, "agents.learning_rate.max_factr"),
    ({"safeguards": {"rollbak": True}}, "safeguards.rollbak"),
    ({"strategy": "vote"}, "unknown strategy 'vote'"),
    ({"shadow": "yes"}, "shadow"),
    ({"seed": "zero"}, "seed"),
    ({"transfer": {"mode": "frozen"}}, "needs transfer.source"),
])
def test_bad_settings_name_the_setting_and_the_file(tmp_path, values, needle):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(values))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_missing_and_unparsable_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")
    p = tmp_path / "broken.json"
    p.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json could not be parsed"):
        load_config(p)


def test_env_variable_overrides_the_variant_default(tmp_path, monkeypatch):
    p = tmp_path / "c.json"
    p.write_text(json.dumps({"agents": {"optimization": {}}}))
    default = HyperaConfig()
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)
    assert config_from_env(default) is default
    monkeypatch.setenv("HYPERA_CONFIG", str(p))
    assert list(config_from_env(default).agents) == ["optimization"]


def test_config_round_trips_through_to_dict():
    cfg = config_from_dict({"agents": {"batch_size": {"min_batch_size": 1, "max_batch_size": 4}}, "seed": 3})
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
