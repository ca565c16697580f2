"""Small, fast source databases for tests.

featuretools computes features once per distinct cutoff time, so test data keep
the synthetic generator's customers and signal but have their order dates moved
to the start of the month: few distinct cutoffs, many same-day orders (which also
exercises the same-day tie-breaking).
"""

from __future__ import annotations

import pandas as pd

from pipeline.data.db import write_tables
from pipeline.data.synthetic import generate_tables


def small_tables(customers: int = 200, seed: int = 3, freq: str = "MS") -> dict[str, pd.DataFrame]:
    tables = generate_tables(customers=customers, seed=seed)
    header = tables["SalesOrderHeader"]
    for col in ("OrderDate", "DueDate", "ShipDate"):
        header[col] = pd.to_datetime(header[col]).dt.to_period(freq[0]).dt.start_time
    detail = tables["SalesOrderDetail"]
    detail["ModifiedDate"] = detail["SalesOrderID"].map(header.set_index("SalesOrderID")["OrderDate"])
    return tables


def write_small_source(url: str, **kwargs) -> dict[str, int]:
    return write_tables(small_tables(**kwargs), url)
