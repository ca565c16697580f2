"""Data problems are named before labels: table, column, count and example keys."""

from __future__ import annotations

import logging

import pandas as pd
import pytest

from pipeline.data.db import DataSourceError
from pipeline.data.extract import _parse_times, validate_tables
from pipeline.spec import load_spec

SPEC = load_spec("adventureworks")


def tables() -> dict[str, pd.DataFrame]:
    """The smallest extract the AdventureWorks spec accepts."""

    def frame(entity: str, rows: dict) -> pd.DataFrame:
        from pipeline.data.extract import spec_columns

        columns = spec_columns(SPEC, entity)
        return pd.DataFrame({c: rows.get(c, [1] * len(next(iter(rows.values())))) for c in columns})

    return {
        "orders": frame(
            "orders",
            {
                "SalesOrderID": [1, 2, 3],
                "CustomerID": [10, 10, 11],
                "OrderDate": pd.to_datetime(["2013-01-01", "2013-02-01", "2013-03-01"]),
            },
        ),
        "order_details": frame(
            "order_details",
            {
                "SalesOrderDetailID": [1, 2],
                "SalesOrderID": [1, 3],
                "ProductID": [5, 5],
                "OrderDate": pd.to_datetime(["2013-01-01", "2013-03-01"]),
            },
        ),
        "customers": frame("customers", {"CustomerID": [10, 11]}),
        "products": frame("products", {"ProductID": [5], "ProductSubcategoryID": [7]}),
        "subcategories": frame("subcategories", {"ProductSubcategoryID": [7], "ProductCategoryID": [9]}),
        "categories": frame("categories", {"ProductCategoryID": [9]}),
    }


def test_a_clean_extract_passes():
    validate_tables(SPEC, tables())


def test_target_rows_without_a_customer_are_refused_with_their_keys():
    t = tables()
    t["orders"]["CustomerID"] = [10, None, None]
    with pytest.raises(DataSourceError, match=r"'orders': 2 row\(s\) have no CustomerID .* SalesOrderID 2, 3"):
        validate_tables(SPEC, t)


def test_duplicate_keys_are_counted_and_shown():
    t = tables()
    t["customers"]["CustomerID"] = [10, 10]
    with pytest.raises(DataSourceError, match=r"'customers': index column 'CustomerID' repeats 1 key\(s\), e.g. 10"):
        validate_tables(SPEC, t)


def test_orphans_are_a_warning_with_examples(caplog):
    t = tables()
    t["order_details"]["ProductID"] = [5, 99]
    with caplog.at_level(logging.WARNING, logger="pipeline.data.extract"):
        validate_tables(SPEC, t)
    assert "order_details.ProductID -> products: 1 row(s) point to no products, e.g. ProductID 99" in caplog.text


@pytest.mark.parametrize(("unit", "scale"), [("s", 1), ("ms", 1_000)])
def test_epoch_numbers_become_dates_in_the_unit_their_size_implies(unit, scale, caplog):
    seconds = pd.Series([1356998400, 1359676800])  # 2013-01-01, 2013-02-01
    df = pd.DataFrame({"SalesOrderID": [1, 2], "OrderDate": seconds * scale, "DueDate": seconds * scale})
    with caplog.at_level(logging.WARNING):
        out = _parse_times(df, SPEC, "orders")
    assert list(out["OrderDate"].dt.strftime("%Y-%m-%d")) == ["2013-01-01", "2013-02-01"]
    assert f"numbers read as epoch {unit}" in caplog.text


def test_text_that_is_no_date_and_implausible_years_are_named():
    df = pd.DataFrame({"SalesOrderID": [1, 2, 3], "OrderDate": ["2013-01-01", "soon", "2013-01-03"], "DueDate": ["2013-01-01"] * 3})
    with pytest.raises(DataSourceError, match=r"column 'OrderDate': 1 value\(s\) are not dates, e.g. 'soon' \(rows 2\)"):
        _parse_times(df, SPEC, "orders")
    df = pd.DataFrame({"SalesOrderID": [1, 2], "OrderDate": ["1899-12-31", "2013-01-01"], "DueDate": ["2013-01-01"] * 2})
    with pytest.raises(DataSourceError, match=r"column 'OrderDate': 1 date\(s\) outside 1900-2200"):
        _parse_times(df, SPEC, "orders")


def test_a_csv_that_is_not_utf8_is_named(tmp_path):
    from pipeline.data.load_csv import read_table_csv

    path = tmp_path / "person_person.csv"
    path.write_bytes("BusinessEntityID,LastName\n1,Mu\xf1oz\n".encode("latin-1"))
    with pytest.raises(DataSourceError, match=r"person_person.csv is not UTF-8 .* iconv"):
        read_table_csv(path)
