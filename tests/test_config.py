"""Config: defaults, YAML and env overrides, clear errors for unknown keys and wrong types."""

import pytest

from pipeline.config import ConfigError, load_config


def test_defaults_resolve_work_dir_and_spec(tmp_path):
    cfg = load_config(overrides={"paths": {"work_dir": str(tmp_path)}}, environ={})
    assert cfg.data.url == f"sqlite:///{tmp_path}/data/synthetic_adventureworks.db"
    assert cfg.tracking.experiment == "churn-adventureworks"
    assert cfg.tuning.search_space and cfg.labels.horizon_days == 180


def test_yaml_then_env_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tuning:\n  n_trials: 3\n  metric: pr_auc\nlabels:\n  horizon_days: 90\n")
    cfg = load_config(path, overrides={"labels": {"horizon_days": 30}}, environ={"PIPELINE__TUNING__N_TRIALS": "11"})
    assert cfg.tuning.n_trials == 11 and cfg.tuning.metric == "pr_auc" and cfg.labels.horizon_days == 30


def test_empty_env_value_is_null():
    cfg = load_config(environ={"PIPELINE__TRACKING__ARTIFACT_LOCATION": ""})
    assert cfg.tracking.artifact_location is None


def test_unknown_key_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("tuning:\n  n_trails: 3\n")
    with pytest.raises(ConfigError, match=r"tuning\.n_trails.*remove it or fix its spelling"):
        load_config(path, environ={})


def test_wrong_type_names_the_key_and_env_var():
    with pytest.raises(ConfigError, match=r"tuning\.n_trials.*PIPELINE__TUNING__N_TRIALS"):
        load_config(environ={"PIPELINE__TUNING__N_TRIALS": "many"})


def test_bad_search_space_and_metric():
    with pytest.raises(ConfigError, match="low < high"):
        load_config(overrides={"tuning": {"search_space": [{"name": "x", "type": "float", "low": 2, "high": 1}]}}, environ={})
    with pytest.raises(ConfigError, match="metric"):
        load_config(overrides={"tuning": {"metric": "accuracy"}}, environ={})


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad, environ={})
