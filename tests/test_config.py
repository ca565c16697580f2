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


def test_config_show_prints_each_value_with_its_source_and_masks_secrets(tmp_path, monkeypatch, capsys):
    from pipeline.cli import main

    path = tmp_path / "my.yaml"
    path.write_text("split:\n  purge: false\n")
    monkeypatch.setenv("PIPELINE__TUNING__N_TRIALS", "7")
    assert main(["config", "show", "--config", str(path), "--set", "data.url=mysql+pymysql://u:s3cr3t@h/db"]) == 0
    lines = dict(line.split(" = ", 1) for line in capsys.readouterr().out.splitlines())
    assert lines["split.purge"] == f"false    # file {path}"
    assert lines["tuning.n_trials"] == "7    # env"
    assert lines["data.url"] == '"mysql+pymysql://u:***@h/db"    # --set'
    assert lines["labels.horizon_days"] == "180    # default"


def test_env_lists_and_mappings_are_yaml_or_json():
    cfg = load_config(environ={"PIPELINE__FEATURES__WINDOWS": "[7d, 30d]", "PIPELINE__MODEL__PARAMS": '{"max_bin": 63}'})
    assert cfg.features.windows == ["7d", "30d"] and cfg.model.params["max_bin"] == 63


def test_env_typos_stop_the_run_naming_the_variable():
    with pytest.raises(ConfigError, match=r"tuning\.n_trails.*remove it or fix its spelling.*PIPELINE__TUNING__N_TRAILS"):
        load_config(environ={"PIPELINE__TUNING__N_TRAILS": "3"})
    with pytest.raises(ConfigError, match=r"no config section \['tunning'\]"):
        load_config(environ={"PIPELINE__TUNNING__N_TRIALS": "3"})


def test_config_show_into_a_closed_pipe_prints_no_traceback():
    import subprocess
    import sys

    # `true` has exited long before the interpreter starts writing: every write meets a closed pipe
    shell = f"{sys.executable} -m pipeline config show | true"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
