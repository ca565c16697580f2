"""Loading AdventureWorks CSV folders into databases: file-to-table names, the README's format
(empty = NULL, ISO datetimes, 0/1 flags, codes as text), clear errors, and the real data when
AW_DATA_DIR points at it."""

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import pipeline
from pipeline.data.db import DataSourceError, describe_url, make_engine
from pipeline.data.load_csv import SPEC_TABLES, load_csv_folder, read_csv_folder, table_names
from tests.dbfixtures import *  # noqa: F403  (postgres_url, mysql_url)

SQL_DIR = Path(pipeline.__file__).parent / "datasets" / "adventureworks" / "sql"

TINY_FILES = {
    "sales_customer.csv": (
        "CustomerID,PersonID,StoreID,TerritoryID,AccountNumber,ModifiedDate\n"
        "1,,934,1,AW00000001,2014-09-12 11:15:07.263\n"
        "11000,291,,9,AW00011000,2014-09-12 00:00:00.000\n"
    ),
    "person_address.csv": (
        "AddressID,AddressLine1,AddressLine2,City,PostalCode,ModifiedDate\n"
        '1,"1970 Napa Ct., Suite 2",,Bothell,01234,2007-12-04 00:00:00.000\n'
        "2,Main St 5,Floor 2,Paris,75002,2008-01-01 00:00:00.000\n"
    ),
    "person_countryregion.csv": (
        "CountryRegionCode,Name,ModifiedDate\nNA,Namibia,2008-04-30 00:00:00.000\nUS,United States,2008-04-30 00:00:00.000\n"
    ),
    "sales_salesorderheader.csv": (
        "SalesOrderID,OrderDate,OnlineOrderFlag,CustomerID,SalesPersonID,CreditCardApprovalCode,"
        "SubTotal,Comment\n"
        "43659,2011-05-31 00:00:00.000,0,1,279,105041Vi84182,20565.6206,\n"
        "43697,2011-05-31 00:00:00.000,1,11000,,,3578.2700,\n"
    ),
    "person_person_demographics.csv": ("BusinessEntityID,DateFirstPurchase,HomeOwnerFlag\n1,,\n291,2003-09-01,1\n"),
    "misc_extra.csv": "A,B\n1,x\n",
}

TINY_COLUMNS = {  # the tables of the round-trip test, with the columns of their CSV header
    table: TINY_FILES[file].splitlines()[0].split(",")
    for table, file in [
        ("Customer", "sales_customer.csv"),
        ("Address", "person_address.csv"),
        ("CountryRegion", "person_countryregion.csv"),
        ("SalesOrderHeader", "sales_salesorderheader.csv"),
    ]
}


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "csv"
    folder.mkdir()
    for name, text in TINY_FILES.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_file_names_map_to_adventureworks_tables(tiny_folder: Path) -> None:
    names = {name: path.name for name, path in table_names(tiny_folder).items()}
    assert names == {
        "Customer": "sales_customer.csv",
        "Address": "person_address.csv",
        "CountryRegion": "person_countryregion.csv",
        "SalesOrderHeader": "sales_salesorderheader.csv",
        "PersonDemographics": "person_person_demographics.csv",
        "misc_extra": "misc_extra.csv",
    }


def test_manifest_names_win(tiny_folder: Path) -> None:
    (tiny_folder / "sales_customer.csv").rename(tiny_folder / "customers_2014.csv")
    manifest = {
        "files": [
            {"file": "customers_2014.csv", "table": "Sales.Customer"},
            {"file": "person_person_demographics.csv", "table": "Person.Person.Demographics (flattened)"},
        ]
    }
    (tiny_folder / "manifest.json").write_text(json.dumps(manifest))
    names = table_names(tiny_folder)
    assert names["Customer"].name == "customers_2014.csv"
    assert names["PersonDemographics"].name == "person_person_demographics.csv"


def test_readme_format_is_parsed(tiny_folder: Path) -> None:
    tables = read_csv_folder(tiny_folder)
    customer, address = tables["Customer"], tables["Address"]
    assert customer.AccountNumber.tolist() == ["AW00000001", "AW00011000"]
    assert str(customer.PersonID.dtype) == "Int64" and customer.PersonID.isna().tolist() == [True, False]
    assert customer.ModifiedDate[0] == pd.Timestamp("2014-09-12 11:15:07.263")
    assert address.PostalCode.tolist() == ["01234", "75002"]
    assert address.AddressLine1[0] == "1970 Napa Ct., Suite 2" and pd.isna(address.AddressLine2[0])
    assert tables["CountryRegion"].CountryRegionCode.tolist() == ["NA", "US"]
    header = tables["SalesOrderHeader"]
    assert header.OnlineOrderFlag.tolist() == [False, True]
    assert header.CreditCardApprovalCode[0] == "105041Vi84182" and pd.isna(header.CreditCardApprovalCode[1])
    assert pd.api.types.is_datetime64_any_dtype(header.OrderDate) and header.Comment.isna().all()
    demographics = tables["PersonDemographics"]
    assert pd.isna(demographics.DateFirstPurchase[0]) and demographics.DateFirstPurchase[1].year == 2003
    assert str(demographics.HomeOwnerFlag.dtype) == "boolean"


def test_selected_tables_only_and_clear_errors(tiny_folder: Path, tmp_path: Path) -> None:
    assert list(read_csv_folder(tiny_folder, ["CountryRegion"])) == ["CountryRegion"]
    with pytest.raises(DataSourceError, match=r"sales_salesorderdetail\.csv") as missing:
        read_csv_folder(tiny_folder, ["Customer", "SalesOrderDetail"])
    assert str(tiny_folder) in str(missing.value)
    for folder in (tmp_path / "does-not-exist", tmp_path):
        with pytest.raises(DataSourceError, match="no CSV files in .*<schema>_<table>.csv"):
            read_csv_folder(folder)


def test_unreachable_database_names_masked_url_and_fix(tiny_folder: Path) -> None:
    for url in ("postgresql+psycopg2://churn:s3cret@127.0.0.1:1/churn", "mysql+pymysql://churn:s3cret@127.0.0.1:1/churn"):
        with pytest.raises(DataSourceError) as error:
            load_csv_folder(tiny_folder, url, ["CountryRegion"])
        message = str(error.value)
        assert "s3cret" not in message and "churn:***@127.0.0.1:1" in message
        assert "server is running" in message
    assert describe_url("mysql+pymysql://u:pw@h/db") == "mysql+pymysql://u:***@h/db"
    with pytest.raises(DataSourceError, match="invalid database URL"):
        make_engine("not a url")


def _read_back(url: str, table: str) -> pd.DataFrame:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            name = table.lower() if engine.dialect.name == "postgresql" else table
            frame = pd.read_sql_table(name, conn)
    finally:
        engine.dispose()
    by_lower = {column.lower(): column for column in TINY_COLUMNS[table]}
    return frame.rename(columns=lambda column: by_lower[column.lower()])


@pytest.mark.parametrize(
    "server",
    [
        "sqlite",
        pytest.param("postgres_url", marks=pytest.mark.integration),
        pytest.param("mysql_url", marks=pytest.mark.integration),
    ],
)
def test_round_trip_keeps_nulls_dates_and_codes(server: str, tiny_folder: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'tiny.db'}" if server == "sqlite" else request.getfixturevalue(server)
    counts = load_csv_folder(tiny_folder, url, list(TINY_COLUMNS))
    assert counts == {name: 2 for name in TINY_COLUMNS}
    customer = _read_back(url, "Customer")
    assert customer.AccountNumber.tolist() == ["AW00000001", "AW00011000"]
    assert customer.PersonID.isna().tolist() == [True, False]
    assert pd.Timestamp(customer.ModifiedDate[0]) == pd.Timestamp("2014-09-12 11:15:07.263")
    address = _read_back(url, "Address")
    assert address.PostalCode.tolist() == ["01234", "75002"] and address.AddressLine2.isna()[0]
    assert _read_back(url, "CountryRegion").CountryRegionCode.tolist() == ["NA", "US"]
    header = _read_back(url, "SalesOrderHeader")
    assert header.OnlineOrderFlag.astype(int).tolist() == [0, 1]
    assert header.SalesPersonID.isna().tolist() == [False, True] and header.Comment.isna().all()
    assert header.SubTotal.tolist() == [20565.6206, 3578.27]
    # reloading replaces the tables (and their key indexes) instead of failing or appending
    assert load_csv_folder(tiny_folder, url, ["Customer"]) == {"Customer": 2}
    assert len(_read_back(url, "Customer")) == 2


@pytest.mark.skipif(
    not os.environ.get("AW_DATA_DIR") or not Path(os.environ["AW_DATA_DIR"]).is_dir(),
    reason="set AW_DATA_DIR to the real AdventureWorks CSV folder",
)
def test_real_adventureworks_spec_tables_into_sqlite(tmp_path: Path) -> None:
    folder = Path(os.environ["AW_DATA_DIR"])
    url = f"sqlite:///{tmp_path / 'aw.db'}"
    counts = load_csv_folder(folder, url, SPEC_TABLES)
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {entry["table"].split(".")[-1]: entry["rows"] for entry in manifest["files"] if entry["table"].split(".")[-1] in SPEC_TABLES}
    assert counts == expected
    assert counts["SalesOrderHeader"] == 31_465 and counts["SalesOrderDetail"] == 121_317
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            results = {path.stem: pd.read_sql(sa.text(path.read_text()), conn) for path in sorted(SQL_DIR.glob("*.sql"))}
    finally:
        engine.dispose()
    assert len(results) == 6 and all(len(frame) for frame in results.values())
    assert len(results["order_details"]) == 121_317 and len(results["orders"]) == 31_465
    assert set(results["customers"].CustomerType) == {"individual", "store"}
