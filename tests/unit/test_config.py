from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raymlops.config import load_config
from raymlops.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_minimal_config_defaults_everything_else(minimal_raw):
    cfg = load_config(minimal_raw)
    assert cfg.project == "default"
    assert cfg.train.scaling.num_workers == 1
    assert cfg.deploy.port == 8000
    assert cfg.data.numeric is None  # inferred later from the data
    assert cfg.monitor.replay is None


def test_config_is_frozen(minimal_raw):
    cfg = load_config(minimal_raw)
    with pytest.raises(Exception, match="frozen"):
        cfg.deploy.port = 1  # type: ignore[misc]


def test_missing_key_names_its_path(minimal_raw):
    del minimal_raw["data"]["target"]
    with pytest.raises(ConfigError, match=r"data\.target: required key is missing \(expected str"):
        load_config(minimal_raw)
    del minimal_raw["data"]["task"]
    with pytest.raises(ConfigError, match=r"data\.task: .*expected 'classification' \| 'regr"):
        load_config(minimal_raw)
    del minimal_raw["deploy"]
    with pytest.raises(ConfigError, match=r"deploy: .*expected a mapping with keys .*name"):
        load_config(minimal_raw)


def test_unknown_key_names_its_path_and_the_allowed_keys(minimal_raw):
    minimal_raw["train"]["paramz"] = {}
    with pytest.raises(ConfigError) as err:
        load_config(minimal_raw)
    assert "train.paramz: unknown key" in str(err.value)
    assert "framework" in str(err.value) and "scaling" in str(err.value)


def test_wrong_type_names_the_key_and_the_value(minimal_raw):
    minimal_raw["train"]["scaling"] = {"num_workers": "many"}
    with pytest.raises(ConfigError, match=r"train\.scaling\.num_workers: .*integer.*'many'"):
        load_config(minimal_raw)


def test_wrong_literal_lists_the_choices(minimal_raw):
    minimal_raw["data"]["task"] = "classify"
    with pytest.raises(ConfigError, match=r"data\.task: .*'classification' or 'regression'"):
        load_config(minimal_raw)


def test_gate_metric_must_fit_the_task(minimal_raw):
    minimal_raw["gates"] = {"min": {"rmse": 1.0}}
    with pytest.raises(ConfigError, match=r"gates\.min\.rmse: unknown metric"):
        load_config(minimal_raw)


def test_target_cannot_be_pii(minimal_raw):
    minimal_raw["data"]["pii"] = {"y": "hash"}
    with pytest.raises(ConfigError, match=r"data\.pii\.y"):
        load_config(minimal_raw)


def test_overrides_are_validated_like_yaml(minimal_raw):
    assert load_config(minimal_raw, {"deploy.port": 8123}).deploy.port == 8123
    with pytest.raises(ConfigError, match=r"deploy\.port"):
        load_config(minimal_raw, {"deploy.port": 70000})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(scalar)


@pytest.mark.parametrize("name", ["demo.yaml", "minimal.yaml", "churn.yaml"])
def test_shipped_configs_load(name):
    load_config(ROOT / "configs" / name)


def test_packaged_demo_config_is_the_repo_one():
    packaged = ROOT / "raymlops" / "_resources" / "demo.yaml"
    assert yaml.safe_load(packaged.read_text()) == yaml.safe_load(
        (ROOT / "configs" / "demo.yaml").read_text())


def test_sql_source_needs_a_query_or_table(minimal_raw):
    from raymlops.data.sources import resolve_source

    minimal_raw["data"]["source"] = "sqlite:///x.db"
    with pytest.raises(ConfigError, match=r"data\.query"):
        resolve_source(load_config(minimal_raw).data, str)
    minimal_raw["data"]["table"] = "loans; DROP TABLE x"
    with pytest.raises(ConfigError, match=r"data\.table"):
        load_config(minimal_raw)
