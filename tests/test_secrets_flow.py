"""Secrets never travel as flow-run parameters: `run` moves them to the environment, `trigger`
refuses them; each local stack gets its own Optuna user; shown values are masked."""

from __future__ import annotations

import argparse
import os

import pytest

from pipeline.cli import move_secrets_to_environment, refuse_secrets, run_overrides
from pipeline.config import load_config
from pipeline.masking import mask_mapping, mask_url, secret_paths
from pipeline.ops.state import StackSettings, resolve_secrets

SECRET = "s3cr3t-Pa55"


def test_run_moves_secret_values_to_the_environment_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PIPELINE__DATA__URL", raising=False)
    monkeypatch.delenv("PIPELINE__TUNING__STORAGE", raising=False)
    overrides = {
        "data": {"url": f"mysql+pymysql://reader:{SECRET}@db:3306/aw", "spec": "adventureworks"},
        "tuning": {"storage": f"mysql+pymysql://optuna:{SECRET}@db/optuna", "n_trials": 3},
    }
    public = move_secrets_to_environment(overrides)
    assert public == {"data": {"spec": "adventureworks"}, "tuning": {"n_trials": 3}}
    assert SECRET not in repr(public)
    assert os.environ["PIPELINE__DATA__URL"] == overrides["data"]["url"]
    # what the flow resolves from the public part plus the environment is what the user asked for
    cfg = load_config(overrides=public)
    assert cfg.data.url == overrides["data"]["url"] and cfg.tuning.storage == overrides["tuning"]["storage"]
    assert cfg.tuning.n_trials == 3


def test_trigger_refuses_a_secret_and_names_the_variable_to_set() -> None:
    with pytest.raises(SystemExit) as refused:
        refuse_secrets({"data": {"url": f"postgresql+psycopg2://u:{SECRET}@h/db"}})
    message = str(refused.value)
    assert "data.url" in message and "PIPELINE__DATA__URL" in message and SECRET not in message
    refuse_secrets({"data": {"url": "postgresql+psycopg2://u@h/db"}, "tuning": {"n_trials": 5}})  # no password: fine


def test_a_config_file_travels_as_its_content_never_as_a_path(tmp_path) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("tuning:\n  n_trials: 7\nsplit:\n  purge: false\n")
    args = argparse.Namespace(config=str(path), set=["tuning.n_trials=9"])
    assert run_overrides(args) == {"tuning": {"n_trials": 9}, "split": {"purge": False}}
    assert run_overrides(argparse.Namespace(config=None, set=[])) is None


def test_masking_covers_urls_and_secret_named_keys() -> None:
    config = {"data": {"url": f"mysql+pymysql://u:{SECRET}@h/db"}, "s3": {"secret_access_key": SECRET, "region": "x"}}
    assert SECRET not in repr(mask_mapping(config))
    assert mask_mapping(config)["s3"]["region"] == "x"
    assert [".".join(p) for p, _ in secret_paths(config)] == ["data.url", "s3.secret_access_key"]
    assert mask_url(f"error at http://admin:{SECRET}@mlflow:5000/api") == "error at http://admin:***@mlflow:5000/api"


def test_each_local_stack_gets_its_own_optuna_user_and_every_secret_is_distinct(tmp_path) -> None:
    one = resolve_secrets(StackSettings(state_dir=tmp_path / "a", mysql_bootstrap_socket="/run/x.sock", work_pool="p"), None)
    two = resolve_secrets(StackSettings(state_dir=tmp_path / "b", mysql_bootstrap_socket="/run/x.sock", work_pool="p"), None)

    def user(url: str) -> str:
        return url.split("://")[1].split(":")[0]

    assert user(one.optuna_storage) != user(two.optuna_storage)
    assert user(one.optuna_storage).startswith("optuna_")
    values = one.values()
    assert len(values) == len(set(values)) >= 9
    again = resolve_secrets(StackSettings(state_dir=tmp_path / "a", mysql_bootstrap_socket="/run/x.sock", work_pool="p"), one)
    assert again == one  # a second `up` of the same state dir keeps every secret
