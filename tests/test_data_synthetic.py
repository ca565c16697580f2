"""The synthetic AdventureWorks-shaped database: deterministic, consistent, usable by the spec's SQL
on SQLite, PostgreSQL and MariaDB, with a learnable but noisy churn label."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import pipeline
from pipeline.data.load_csv import PRIMARY_KEYS
from pipeline.data.synthetic import END, START, generate_tables, write_synthetic
from tests.dbfixtures import *  # noqa: F403  (postgres_url, mysql_url)

SQL_DIR = Path(pipeline.__file__).parent / "datasets" / "adventureworks" / "sql"
SPEC_SQL = sorted(SQL_DIR.glob("*.sql"))

FOREIGN_KEYS = [  # (child table, column, parent table, column)
    ("SalesOrderHeader", "CustomerID", "Customer", "CustomerID"),
    ("SalesOrderHeader", "SalesPersonID", "SalesPerson", "BusinessEntityID"),
    ("SalesOrderHeader", "TerritoryID", "SalesTerritory", "TerritoryID"),
    ("SalesOrderHeader", "ShipMethodID", "ShipMethod", "ShipMethodID"),
    ("SalesOrderHeader", "CreditCardID", "CreditCard", "CreditCardID"),
    ("SalesOrderHeader", "CurrencyRateID", "CurrencyRate", "CurrencyRateID"),
    ("SalesOrderDetail", "SalesOrderID", "SalesOrderHeader", "SalesOrderID"),
    ("SalesOrderDetail", "ProductID", "Product", "ProductID"),
    ("SalesOrderDetail", "SpecialOfferID", "SpecialOffer", "SpecialOfferID"),
    ("Customer", "PersonID", "Person", "BusinessEntityID"),
    ("Customer", "StoreID", "Store", "BusinessEntityID"),
    ("Customer", "TerritoryID", "SalesTerritory", "TerritoryID"),
    ("Store", "SalesPersonID", "SalesPerson", "BusinessEntityID"),
    ("SalesPerson", "BusinessEntityID", "Person", "BusinessEntityID"),
    ("SalesPerson", "TerritoryID", "SalesTerritory", "TerritoryID"),
    ("Product", "ProductSubcategoryID", "ProductSubcategory", "ProductSubcategoryID"),
    ("ProductSubcategory", "ProductCategoryID", "ProductCategory", "ProductCategoryID"),
]


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return generate_tables()


@pytest.fixture(scope="module")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('synthetic') / 'nested' / 'aw.db'}"
    write_synthetic(url)
    return url


def churn_labels(header: pd.DataFrame, horizon_days: int = 180) -> pd.Series:
    """The pipeline's label, vectorised: 1 when the customer's next order is not within the horizon;
    only orders at least `horizon_days` before the last order date are labelled."""
    orders = header.sort_values(["CustomerID", "OrderDate", "SalesOrderID"])
    next_order = orders.groupby("CustomerID").OrderDate.shift(-1)
    churn = ~((next_order - orders.OrderDate).dt.days <= horizon_days)
    labelled = orders.OrderDate <= orders.OrderDate.max() - pd.Timedelta(days=horizon_days)
    return churn[labelled].astype(int)


def run_spec_sql(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return {path.stem: pd.read_sql(sa.text(path.read_text()), conn) for path in SPEC_SQL}
    finally:
        engine.dispose()


def check_spec_results(results: dict[str, pd.DataFrame], tables: dict[str, pd.DataFrame]) -> None:
    expected_rows = {
        "orders": "SalesOrderHeader",
        "order_details": "SalesOrderDetail",
        "customers": "Customer",
        "products": "Product",
        "subcategories": "ProductSubcategory",
        "categories": "ProductCategory",
    }
    assert set(results) == set(expected_rows)
    for query, table in expected_rows.items():
        assert len(results[query]) == len(tables[table]), query
    customers = results["customers"].rename(columns=str.lower)
    assert set(customers.customertype) == {"individual", "store"}
    assert customers.countryregioncode.notna().all() and customers.persontype.notna().all()


def test_deterministic_for_a_seed() -> None:
    first, again, other = generate_tables(150, seed=3), generate_tables(150, seed=3), generate_tables(150, seed=4)
    assert first.keys() == again.keys()
    for name in first:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert not first["SalesOrderHeader"].equals(other["SalesOrderHeader"])
    assert not first["Product"].ListPrice.equals(other["Product"].ListPrice)


def test_size_and_value_ranges(tables: dict[str, pd.DataFrame]) -> None:
    header, detail = tables["SalesOrderHeader"], tables["SalesOrderDetail"]
    customers = tables["Customer"]
    assert 2500 <= len(header) <= 5000
    assert 3.0 <= len(detail) / len(header) <= 5.0
    assert header.CustomerID.nunique() == len(customers)
    assert 0.05 <= customers.StoreID.notna().mean() <= 0.15
    assert header.OrderDate.min() >= START and header.OrderDate.max() <= END
    orders_per_year = header.OrderDate.dt.year.value_counts()
    assert orders_per_year[2013] > orders_per_year[2012] > orders_per_year[2011]  # growth
    assert tables["ProductCategory"].shape[0] == 4 and tables["ProductSubcategory"].shape[0] == 37
    assert 200 <= len(tables["Product"]) <= 400
    assert tables["Product"].ListPrice.between(2, 3600).all()
    territories = tables["SalesTerritory"]
    assert territories.TerritoryID.tolist() == list(range(1, 11))
    assert set(territories.CountryRegionCode) == {"US", "CA", "FR", "DE", "AU", "GB"}
    person = tables["Person"].set_index("BusinessEntityID")
    kind = customers.PersonID.map(person.PersonType)
    assert (kind == np.where(customers.StoreID.notna(), "SC", "IN")).all()
    assert set(person.EmailPromotion) == {0, 1, 2}


def test_order_arithmetic_and_dates(tables: dict[str, pd.DataFrame]) -> None:
    header, detail = tables["SalesOrderHeader"], tables["SalesOrderDetail"]
    expected_line = detail.UnitPrice * (1 - detail.UnitPriceDiscount) * detail.OrderQty
    assert np.allclose(detail.LineTotal, expected_line, atol=1e-6)
    line_sum = detail.groupby("SalesOrderID").LineTotal.sum().reindex(header.SalesOrderID)
    assert np.allclose(header.SubTotal, line_sum.to_numpy(), atol=1e-4)
    assert np.allclose(header.TaxAmt, header.SubTotal * 0.08, atol=1e-4)
    assert np.allclose(header.Freight, header.SubTotal * 0.025, atol=1e-4)
    assert np.allclose(header.TotalDue, header.SubTotal + header.TaxAmt + header.Freight, atol=1e-4)
    assert ((header.DueDate - header.OrderDate).dt.days == 12).all()
    assert ((header.ShipDate - header.OrderDate).dt.days == 7).all()
    assert (header.Status == 5).all()
    assert header.SalesOrderID.is_monotonic_increasing and header.OrderDate.is_monotonic_increasing
    for column in ("OrderDate", "DueDate", "ShipDate", "ModifiedDate"):
        assert (header[column] == header[column].dt.normalize()).all(), column
    online = header.OnlineOrderFlag.astype(bool)
    assert header.SalesPersonID[online].isna().all() and header.SalesPersonID[~online].notna().all()


def test_referential_integrity(tables: dict[str, pd.DataFrame]) -> None:
    for child, column, parent, key in FOREIGN_KEYS:
        values = tables[child][column].dropna()
        assert len(values), f"{child}.{column} is empty"
        orphans = ~values.isin(tables[parent][key])
        assert not orphans.any(), f"{child}.{column} -> {parent}.{key}: {values[orphans].head().tolist()}"
    for name, frame in tables.items():
        assert not frame.duplicated(PRIMARY_KEYS[name]).any(), name
    assert tables["SalesOrderHeader"].SalesOrderID.isin(tables["SalesOrderDetail"].SalesOrderID).all()


def test_churn_label_is_balanced_and_depends_on_observables(tables: dict[str, pd.DataFrame]) -> None:
    header = tables["SalesOrderHeader"]
    labels = churn_labels(header)
    assert len(labels) > 1500
    assert 0.25 <= labels.mean() <= 0.70
    by_channel = labels.groupby(header.OnlineOrderFlag.astype(bool).loc[labels.index]).mean()
    assert by_channel[True] > by_channel[False] + 0.15  # individuals churn more than stores


def test_twenty_thousand_customers_generate_fast() -> None:
    started = time.perf_counter()
    header = generate_tables(20_000, seed=1)["SalesOrderHeader"]
    assert time.perf_counter() - started < 10
    assert len(header) > 30_000


def test_spec_sql_runs_on_sqlite(sqlite_url: str, tables: dict[str, pd.DataFrame]) -> None:
    check_spec_results(run_spec_sql(sqlite_url), tables)


@pytest.mark.integration
def test_postgres_gets_lower_case_names_and_runs_spec_sql(postgres_url: str) -> None:
    counts = write_synthetic(postgres_url, customers=300, seed=5)
    tables = generate_tables(300, seed=5)
    assert counts == {name: len(frame) for name, frame in tables.items()}
    engine = sa.create_engine(postgres_url)
    try:
        inspector = sa.inspect(engine)
        assert {"salesorderheader", "salesorderdetail", "customer"} <= set(inspector.get_table_names())
        columns = {c["name"]: c["type"] for c in inspector.get_columns("salesorderheader")}
        assert "orderdate" in columns and isinstance(columns["orderdate"], sa.DateTime)
    finally:
        engine.dispose()
    check_spec_results(run_spec_sql(postgres_url), tables)


@pytest.mark.integration
def test_mysql_keeps_camel_case_names_and_runs_spec_sql(mysql_url: str) -> None:
    write_synthetic(mysql_url, customers=300, seed=5)
    engine = sa.create_engine(mysql_url)
    try:
        assert {"SalesOrderHeader", "SalesOrderDetail", "Customer"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    results = run_spec_sql(mysql_url)
    check_spec_results(results, generate_tables(300, seed=5))
    assert results["orders"].SubTotal.gt(0).all()
