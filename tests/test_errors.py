"""Bad input stops the run before any expensive work, with a message naming the problem and the fix."""

import pandas as pd
import pytest
import sqlalchemy as sa

from pipeline import steps
from pipeline.config import load_config
from pipeline.data.db import DataSourceError
from pipeline.data.extract import extract_tables, validate_tables
from pipeline.labels import LabelError
from pipeline.preprocess import SplitError, time_split
from pipeline.spec import SpecError, load_spec
from tests.helpers import small_tables, write_small_source

SPEC = load_spec("adventureworks")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('src')}/ok.db"
    write_small_source(url, customers=60)
    return url


def test_unreachable_database_names_the_url_without_password():
    with pytest.raises(DataSourceError) as err:
        extract_tables("mysql+pymysql://reader:s3cret@127.0.0.1:1/aw", SPEC)
    assert "127.0.0.1:1" in str(err.value) and "s3cret" not in str(err.value)


def test_missing_table_is_named(tmp_path):
    url = f"sqlite:///{tmp_path}/partial.db"
    tables = small_tables(customers=60)
    del tables["Product"]
    from pipeline.data.db import write_tables

    write_tables(tables, url)
    with pytest.raises(DataSourceError, match=r"'products'.*Product"):
        extract_tables(url, SPEC)


def test_missing_column_is_named(source):
    tables = extract_tables(source, SPEC)
    tables["orders"] = tables["orders"].drop(columns=["CustomerID"])
    with pytest.raises(DataSourceError, match=r"orders.*CustomerID"):
        validate_tables(SPEC, tables)


def test_relationship_keys_that_do_not_match(source):
    tables = extract_tables(source, SPEC)
    tables["order_details"] = tables["order_details"].assign(ProductID=tables["order_details"].ProductID + 10_000_000)
    with pytest.raises(DataSourceError, match=r"order_details.ProductID -> products.ProductID: no key matches"):
        validate_tables(SPEC, tables)


def test_empty_extract(source, tmp_path):
    url = f"sqlite:///{tmp_path}/empty.db"
    with sa.create_engine(source).connect() as src, sa.create_engine(url).begin() as dst:
        for table in (
            "SalesOrderHeader",
            "SalesOrderDetail",
            "Customer",
            "SalesTerritory",
            "Person",
            "Product",
            "ProductSubcategory",
            "ProductCategory",
        ):
            frame = pd.read_sql(sa.text(f"SELECT * FROM {table}"), src)
            (frame.head(0) if table == "SalesOrderHeader" else frame).to_sql(table, dst, index=False)
    with pytest.raises(DataSourceError, match=r"'orders'.*empty"):
        extract_tables(url, SPEC)


def test_one_class_labels_stop_the_run(source, tmp_path):
    cfg = load_config(
        overrides={"paths": {"work_dir": str(tmp_path)}, "data": {"url": source}, "labels": {"horizon_days": 5000}}, environ={}
    )
    art = steps.run_artifacts(cfg, "r1")
    steps.extract(cfg, art)
    with pytest.raises(LabelError, match="no order is old enough"):
        steps.make_labels(cfg, art)


def test_too_few_rows_for_the_split():
    frame = pd.DataFrame({"x": range(30), "churn": [0, 1] * 15})
    times = pd.Series(pd.date_range("2012-01-01", periods=30, freq="7D"))
    with pytest.raises(SplitError, match="fewer than split.min_rows"):
        time_split(frame, times, 0.2, 0.2, horizon_days=7, min_rows=50)


def test_unknown_spec_and_bad_spec(tmp_path):
    with pytest.raises(SpecError, match="packaged"):
        load_spec("no-such-dataset")
    bad = tmp_path / "spec.yaml"
    bad.write_text("name: x\ntarget: {entity: orders, customer_key: c, time_index: t}\nentities: {}\n")
    with pytest.raises(SpecError, match="target.entity"):
        load_spec(str(bad))
    missing_sql = tmp_path / "s2.yaml"
    missing_sql.write_text(
        "name: x\ntarget: {entity: o, customer_key: c, time_index: t}\nentities: {o: {query: o.sql, index: id, time_index: t}}\n"
    )
    with pytest.raises(SpecError, match="o.sql"):
        load_spec(str(missing_sql))


def test_cli_reports_config_errors_without_traceback(capsys):
    from pipeline.cli import main

    assert main(["run", "--set", "tuning.n_trials=lots"]) == 2
    assert "tuning.n_trials" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("sets", "named"),
    [
        (["data.url=mysql+pymysql://u:s3cr3t@h/db", "tuning.n_trials=lots"], "tuning.n_trials"),  # wrong type elsewhere
        (["data.url=[mysql+pymysql://u:s3cr3t@h/db]"], "data.url"),  # an invalid value in the URL key itself
        (["data.url.host=mysql+pymysql://u:s3cr3t@h/db"], "data.url"),
        (["data=mysql+pymysql://u:s3cr3t@h/db"], "data"),
        (["storage.s3_secret_key=s3cr3t"], "storage.s3_secret_key"),  # an unknown, secret-named key
    ],
)
def test_config_errors_mask_credentials(sets, named):
    from pipeline.config import ConfigError, parse_sets

    with pytest.raises(ConfigError) as err:
        load_config(overrides=parse_sets(sets), environ={})
    assert f"- {named}:" in str(err.value) and "s3cr3t" not in str(err.value)
