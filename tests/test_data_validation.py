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


def _spec_with_categories(strict: bool):
    """The AdventureWorks spec with ShipMethodID's allowed codes declared (1 and 5, as in the source)."""
    orders = SPEC.entities["orders"].model_copy(update={"categories": {"ShipMethodID": [1, 5]}})
    return SPEC.model_copy(update={"entities": {**SPEC.entities, "orders": orders}, "strict_categories": strict})


def test_values_outside_the_declared_categories_are_named_with_their_rows(caplog):
    t = tables()
    t["orders"]["ShipMethodID"] = [1, 7, 7]
    with caplog.at_level(logging.WARNING, logger="pipeline.data.extract"):
        validate_tables(_spec_with_categories(strict=False), t)
    assert "entity 'orders', column 'ShipMethodID': 2 value(s) outside the spec's categories, e.g. 7 (SalesOrderID 2, 3)" in caplog.text
    with pytest.raises(DataSourceError, match=r"2 value\(s\) outside the spec's categories, e.g. 7 \(SalesOrderID 2, 3\); add them"):
        validate_tables(_spec_with_categories(strict=True), t)
    t["orders"]["ShipMethodID"] = [1, 5, None]
    validate_tables(_spec_with_categories(strict=True), t)  # declared values and NULLs pass


def test_categories_the_training_part_never_saw_are_warned_about_by_feature_and_row(caplog):
    from pipeline.preprocess import Encoder, warn_unseen_categories

    train = pd.DataFrame({"Territory": pd.Categorical(["1", "2", "1"]), "x": [1.0, 2.0, 3.0], "churn": [0, 1, 0]}, index=[10, 11, 12])
    test = pd.DataFrame({"Territory": pd.Categorical(["2", "9", "9", None]), "x": [1.0] * 4, "churn": [0] * 4}, index=[20, 21, 22, 23])
    encoder = Encoder().fit(train)
    with caplog.at_level(logging.WARNING, logger="pipeline.preprocess"):
        counts = warn_unseen_categories(encoder, "test", test)
    assert counts == {"Territory": 2}
    assert (
        "test part: feature 'Territory' has 2 value(s) never seen in training (encoded as missing), e.g. '9' (rows 21, 22)" in caplog.text
    )
    assert encoder.transform(test)["Territory"].isna().tolist() == [False, True, True, True]
    assert warn_unseen_categories(encoder, "train", train) == {}
