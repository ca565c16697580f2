"""Pre-run checks: each certain failure is found before any server starts, as one clear line."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pipeline.checks import run_checks
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.spec import PACKAGED
from tests.helpers import write_small_source


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/source.db"
    write_small_source(url, customers=60)
    return url


def spec_copy(tmp_path: Path, edit_spec=None, edit_sql=None) -> str:
    folder = tmp_path / "spec"
    shutil.copytree(PACKAGED / "adventureworks", folder)
    if edit_spec:
        path = folder / "spec.yaml"
        path.write_text(edit_spec(path.read_text()))
    if edit_sql:
        name, edit = edit_sql
        path = folder / "sql" / name
        path.write_text(edit(path.read_text()))
    return str(folder / "spec.yaml")


def problems(**sections) -> list[str]:
    return [str(p) for p in run_checks(load_config(overrides=sections))]


def test_a_good_setup_passes(source):
    assert problems(data={"url": source}) == []


def test_a_mistyped_logical_type_is_named(source, tmp_path):
    spec = spec_copy(tmp_path, edit_spec=lambda t: t.replace("CustomerID: Integer", "CustomerID: Integr", 1))
    found = problems(data={"url": source, "spec": spec})
    assert len(found) == 1 and "entities.orders.logical_types.CustomerID: 'Integr' is not a woodwork logical type" in found[0]


def test_a_mistyped_column_in_the_sql_is_named(source, tmp_path):
    spec = spec_copy(tmp_path, edit_sql=("orders.sql", lambda t: t.replace("SalesPersonID", "SalesPersnID")))
    found = problems(data={"url": source, "spec": spec})
    assert found and all(p.startswith("source: entity 'orders'") for p in found), found
    assert "SalesPersnID" in found[0]


def test_a_missing_table_and_a_missing_file_are_named(source, tmp_path):
    spec = spec_copy(tmp_path, edit_sql=("customers.sql", lambda t: t.replace("FROM Customer", "FROM Custmer")))
    assert any("entity 'customers'" in p and "Custmer" in p for p in problems(data={"url": source, "spec": spec}))
    missing = problems(data={"url": f"sqlite:///{tmp_path}/absent.db", "generate_if_missing": False})
    assert missing == [f"source: the source database file {tmp_path}/absent.db does not exist (data.url sqlite:///{tmp_path}/absent.db)"]


def test_unreachable_services_are_named_with_masked_passwords(source, free_port):
    found = problems(
        data={"url": f"postgresql+psycopg2://u:hunter2@127.0.0.1:{free_port}/db"},
        tracking={"tracking_uri": f"http://127.0.0.1:{free_port}"},
        tuning={"storage": f"mysql+pymysql://u:hunter2@127.0.0.1:{free_port}/optuna"},
    )
    assert [p.split(":")[0] for p in found] == ["source", "tracking", "tuning"], found
    assert all("hunter2" not in p for p in found) and all(str(free_port) in p for p in found)


def test_check_command_exits_2_with_one_line_per_problem(source, capsys):
    assert main(["check", "--set", f"data.url={source}"]) == 0
    assert "all checks passed" in capsys.readouterr().out
    assert main(["check", "--set", f"data.url={source}", "--set", "tracking.tracking_uri=http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: tracking: MLflow at http://127.0.0.1:9 does not answer (ConnectionError): is the server running?"]


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_trigger_names_an_unreachable_prefect_api_instead_of_a_traceback(free_port, monkeypatch, capsys):
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port}/api")
    assert main(["trigger", "--wait"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: prefect: the Prefect API at http://127.0.0.1:{free_port}/api does not answer (ConnectionError)"]
