"""Load a folder of AdventureWorks CSV exports into any SQLAlchemy database.

The pipeline reads its data with SQL, so offline CSV copies of AdventureWorks (one
`<schema>_<table>.csv` per table, NULL as an empty field, datetimes as `YYYY-MM-DD HH:MM:SS.fff`,
booleans as 0/1) are first loaded into a database under their unqualified CamelCase names
(`sales_salesorderheader.csv` -> `SalesOrderHeader`), exactly as the spec's queries name them.
Parsing keeps code-like columns (postal codes, account and card numbers) as text, so that
leading zeros survive, and keeps the string "NA" (Namibia's country code) as a value, not NULL.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from pipeline.data.db import DataSourceError, write_tables

log = logging.getLogger(__name__)

# The 8 tables the adventureworks spec's SQL reads.
SPEC_TABLES: list[str] = [
    "SalesOrderHeader",
    "SalesOrderDetail",
    "Customer",
    "SalesTerritory",
    "Person",
    "Product",
    "ProductSubcategory",
    "ProductCategory",
]

# Every table of the AdventureWorks OLTP database, by schema; used when there is no manifest.json.
AW_SCHEMAS: dict[str, list[str]] = {
    "dbo": ["AWBuildVersion", "DatabaseLog", "ErrorLog"],
    "HumanResources": ["Department", "Employee", "EmployeeDepartmentHistory", "EmployeePayHistory", "JobCandidate", "Shift"],
    "Person": [
        "Address",
        "AddressType",
        "BusinessEntity",
        "BusinessEntityAddress",
        "BusinessEntityContact",
        "ContactType",
        "CountryRegion",
        "EmailAddress",
        "Password",
        "Person",
        "PersonPhone",
        "PhoneNumberType",
        "StateProvince",
    ],
    "Production": [
        "BillOfMaterials",
        "Culture",
        "Document",
        "Illustration",
        "Location",
        "Product",
        "ProductCategory",
        "ProductCostHistory",
        "ProductDescription",
        "ProductDocument",
        "ProductInventory",
        "ProductListPriceHistory",
        "ProductModel",
        "ProductModelIllustration",
        "ProductModelProductDescriptionCulture",
        "ProductPhoto",
        "ProductProductPhoto",
        "ProductReview",
        "ProductSubcategory",
        "ScrapReason",
        "TransactionHistory",
        "TransactionHistoryArchive",
        "UnitMeasure",
        "WorkOrder",
        "WorkOrderRouting",
    ],
    "Purchasing": ["ProductVendor", "PurchaseOrderDetail", "PurchaseOrderHeader", "ShipMethod", "Vendor"],
    "Sales": [
        "CountryRegionCurrency",
        "CreditCard",
        "Currency",
        "CurrencyRate",
        "Customer",
        "PersonCreditCard",
        "SalesOrderDetail",
        "SalesOrderHeader",
        "SalesOrderHeaderSalesReason",
        "SalesPerson",
        "SalesPersonQuotaHistory",
        "SalesReason",
        "SalesTaxRate",
        "SalesTerritory",
        "SalesTerritoryHistory",
        "ShoppingCartItem",
        "SpecialOffer",
        "SpecialOfferProduct",
        "Store",
    ],
}

# File stem -> table name, for the built-in tables plus the flattened XML demographics extras.
KNOWN_FILES: dict[str, str] = {
    **{f"{schema}_{table}".lower(): table for schema, names in AW_SCHEMAS.items() for table in names},
    "person_person_demographics": "PersonDemographics",
    "sales_store_demographics": "StoreDemographics",
}

# Primary keys (unique indexes after loading, which keep the spec's joins fast on MariaDB).
PRIMARY_KEYS: dict[str, list[str]] = {
    "SalesOrderHeader": ["SalesOrderID"],
    "SalesOrderDetail": ["SalesOrderID", "SalesOrderDetailID"],
    "SalesOrderHeaderSalesReason": ["SalesOrderID", "SalesReasonID"],
    "Customer": ["CustomerID"],
    "SalesTerritory": ["TerritoryID"],
    "SalesPerson": ["BusinessEntityID"],
    "SalesReason": ["SalesReasonID"],
    "Store": ["BusinessEntityID"],
    "StoreDemographics": ["BusinessEntityID"],
    "Person": ["BusinessEntityID"],
    "PersonDemographics": ["BusinessEntityID"],
    "Address": ["AddressID"],
    "AddressType": ["AddressTypeID"],
    "BusinessEntityAddress": ["BusinessEntityID", "AddressID", "AddressTypeID"],
    "StateProvince": ["StateProvinceID"],
    "CountryRegion": ["CountryRegionCode"],
    "Currency": ["CurrencyCode"],
    "CurrencyRate": ["CurrencyRateID"],
    "CreditCard": ["CreditCardID"],
    "ShipMethod": ["ShipMethodID"],
    "SpecialOffer": ["SpecialOfferID"],
    "SpecialOfferProduct": ["SpecialOfferID", "ProductID"],
    "Product": ["ProductID"],
    "ProductModel": ["ProductModelID"],
    "ProductSubcategory": ["ProductSubcategoryID"],
    "ProductCategory": ["ProductCategoryID"],
}

# Identifier-like columns that may look numeric but must stay text (leading zeros, mixed codes).
STRING_COLUMNS = {
    "PostalCode",
    "AccountNumber",
    "CardNumber",
    "CreditCardApprovalCode",
    "CarrierTrackingNumber",
    "PurchaseOrderNumber",
    "SalesOrderNumber",
    "ProductNumber",
    "NationalIDNumber",
    "PhoneNumber",
    "Size",
    "rowguid",
}
NUMERIC_CODE_COLUMNS = {"RevisionNumber"}
DATETIME_PATTERN = r"\d{4}-\d{2}-\d{2}(?: \d{2}:\d{2}:\d{2}(?:\.\d{1,7})?)?"
BOOLEAN_NAME = re.compile(r"(Flag|NameStyle)$")


def table_names(folder: str | Path) -> dict[str, Path]:
    """Table name -> CSV file for every CSV in `folder` (manifest.json first, then built-ins, stem)."""
    folder = Path(folder)
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if not files:
        raise DataSourceError(
            f"no CSV files in {folder}: expected a folder of AdventureWorks exports named "
            "<schema>_<table>.csv (e.g. sales_salesorderheader.csv), as described in its README.md"
        )
    from_manifest = _manifest_tables(folder / "manifest.json")
    return {from_manifest.get(f.name) or KNOWN_FILES.get(f.stem.lower(), f.stem): f for f in files}


def _manifest_tables(path: Path) -> dict[str, str]:
    """File name -> unqualified table: `Person.Person.Demographics (flattened)` -> `PersonDemographics`."""
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text(encoding="utf-8")).get("files", [])
    return {
        entry["file"]: "".join(re.sub(r"\(.*\)", "", entry["table"]).strip().split(".")[1:])
        for entry in entries
        if entry.get("file") and "." in entry.get("table", "")
    }


def read_csv_folder(folder: str | Path, tables: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """Read the CSVs of `folder` as typed DataFrames by table name; `tables` selects a subset.

    Raises DataSourceError (one line at the CLI) naming the folder and the expected file names when a wanted table is missing.
    """
    available = table_names(folder)
    wanted = list(available) if tables is None else list(tables)
    missing = [name for name in wanted if name not in available]
    if missing:
        expected = ", ".join(_expected_file(name) for name in missing)
        raise DataSourceError(f"{folder} lacks the CSV files for tables {missing}: expected {expected}")
    return {name: read_table_csv(available[name]) for name in wanted}


def _expected_file(table: str) -> str:
    stems = [stem for stem, name in KNOWN_FILES.items() if name == table]
    return f"{stems[0]}.csv" if stems else f"<schema>_{table.lower()}.csv"


def read_table_csv(path: Path) -> pd.DataFrame:
    """One CSV in the README's format (UTF-8): empty = NULL, ISO datetimes parsed, codes kept as text."""
    try:
        header = pd.read_csv(path, nrows=0).columns
        text_columns = {column: str for column in header if _is_text_column(column)}
        frame = pd.read_csv(path, dtype=text_columns, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as exc:
        raise DataSourceError(
            f"{path} is not UTF-8 (byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start}): "
            "convert it, e.g. iconv -f latin1 -t utf-8"
        ) from None
    for column in frame.columns:
        frame[column] = _parse_column(frame[column])
    return frame


def _is_text_column(column: str) -> bool:
    return column in STRING_COLUMNS or (column.endswith(("Number", "Code")) and column not in NUMERIC_CODE_COLUMNS)


def _parse_column(series: pd.Series) -> pd.Series:
    """Datetime strings -> datetime64, 0/1 flags -> booleans, NULL-able float IDs -> Int64."""
    values = series.dropna()
    if values.empty:
        return series.astype(object)  # an all-NULL column (e.g. Comment) is text, not float
    if series.dtype == object:
        if not values.head(100).str.fullmatch(DATETIME_PATTERN).all():
            return series
        parsed = pd.to_datetime(series, format="ISO8601", errors="coerce")
        return parsed if parsed.count() == len(values) else series
    if BOOLEAN_NAME.search(str(series.name)) and values.isin([0, 1]).all():
        return series.astype("boolean") if series.isna().any() else series.astype(bool)
    if str(series.name).endswith("ID") and series.dtype == float and (values % 1 == 0).all():
        return series.astype("Int64")
    return series


def load_csv_folder(folder: str | Path, url: str, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Load the CSV folder (or only `tables`, e.g. SPEC_TABLES) into the database at `url`.

    Returns the row count per table. Tables are replaced; key columns get unique indexes.
    """
    frames = read_csv_folder(folder, tables)
    keys = {name: key for name, key in PRIMARY_KEYS.items() if name in frames and set(key) <= set(frames[name].columns)}
    log.info("loading %d tables from %s", len(frames), folder)
    return write_tables(frames, url, keys=keys)
