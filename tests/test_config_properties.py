"""Random configurations: each is a valid HyperaConfig or exactly one ConfigError line naming the file.

Known and unknown keys nest at random, with values of random types (NaN, inf, huge ints, bools where
numbers are meant, lists, nulls). Whatever comes in, ``config_from_dict``, ``run_config`` and the CLI's
``check-config`` answer with a configuration or one clear line; any other exception fails the test.
"""

import contextlib
import dataclasses
import io
import json
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hypera_nnunet.cli import main
from hypera_nnunet.config import HyperaConfig, config_from_dict, run_config
from hypera_nnunet.errors import ConfigError
from hypera_nnunet.settings import ExplorationConfig, LearningConfig, SafeguardConfig, TransferConfig

SECTIONS = {"safeguards": SafeguardConfig, "exploration": ExplorationConfig, "learning": LearningConfig,
            "transfer": TransferConfig}
AGENT_NAMES = ["learning_rate", "loss", "batch_size", "augmentation", "regularization", "optimization"]
AGENT_KEYS = ["max_factor", "max_step", "priority", "share", "every_n_iterations", "deep_supervision",
              "min_batch_size", "max_batch_size"]
TOP_KEYS = [f.name for f in dataclasses.fields(HyperaConfig)]
UNKNOWN = ["rollbak", "x", "", "agents.loss", "1"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(-3, 12), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(-2.0, 5.0), st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 1e-3, 1.5, 2.0]),
    st.sampled_from(["weighted_average", "priority", "consensus", "frozen", "warm_start", "abc", "",
                     "learning_rate", "/runs/fold_0/hypera/policies.pt"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(UNKNOWN + AGENT_KEYS), inner, max_size=3)),
    max_leaves=6)


#: what a known key gets most often: values at and around the edges of the settings' ranges
edges = st.sampled_from([0, 1, -1, 0.5, 1.0, 2, 2.5, 4, 1e-9, 0.999, 10**400, -(10**400), math.nan, math.inf,
                         True, False, None, "x", [], [64, 64], [0], {}])
field_value = st.one_of(edges, edges, values)


def section(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys * 4 + UNKNOWN[:1]), field_value, max_size=4)


agent_settings = st.one_of(st.none(), values, section(AGENT_KEYS))
agents = st.one_of(
    st.lists(st.sampled_from(AGENT_NAMES + ["lr"]), max_size=4),
    st.dictionaries(st.sampled_from(AGENT_NAMES + ["lr"]), agent_settings, max_size=4),
    values,
)


@st.composite
def configs(draw):
    out = {}
    for key in draw(st.lists(st.sampled_from(TOP_KEYS * 4 + UNKNOWN[:2]), max_size=6, unique=True)):
        if key == "agents":
            out[key] = draw(agents)
        elif key in SECTIONS:
            out[key] = draw(st.one_of(section([f.name for f in dataclasses.fields(SECTIONS[key])]), values))
        else:
            out[key] = draw(field_value)
    return out


top_level = st.one_of(*[configs()] * 6, values)


def _check_error(e: ConfigError, source: str) -> None:
    text = str(e)
    assert "\n" not in text and text.startswith(f"{source}: ") and len(text) < 600, text


@settings(max_examples=200, deadline=None)
@given(top_level)
def test_config_from_dict_gives_a_config_or_one_line(values):
    try:
        cfg = config_from_dict(values, "random.json")
    except ConfigError as e:
        _check_error(e, "random.json")
        return
    assert isinstance(cfg, HyperaConfig)
    assert config_from_dict(cfg.to_dict()) == cfg
    assert list(config_from_dict(cfg.to_dict()).agents) == list(cfg.agents)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=top_level, as_yaml=st.booleans())
def test_check_config_gives_the_configuration_or_one_error_line(tmp_path_factory, monkeypatch, values, as_yaml):
    monkeypatch.delenv("HYPERA_CONFIG", raising=False)
    folder = tmp_path_factory.mktemp("cfg", numbered=True)
    path = folder / ("c.yaml" if as_yaml else "c.json")
    try:
        text = yaml.safe_dump(values) if as_yaml else json.dumps(values)
    except (ValueError, yaml.YAMLError):  # JSON cannot hold every key type hypothesis draws
        return
    path.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(["check-config", str(path)])
    try:
        cfg = run_config("HyperaTrainer", path)
    except ConfigError as e:
        _check_error(e, str(path))
        assert rc == 2 and out.getvalue() == ""
        assert err.getvalue() == f"hypera-nnunet: error: {e}\n"
        return
    assert rc == 0 and err.getvalue() == ""
    assert out.getvalue().splitlines()[:2] == [f"{path} on HyperaTrainer: OK",
                                               f"  agents ({len(cfg.agents)}): {', '.join(cfg.agents)}"]
