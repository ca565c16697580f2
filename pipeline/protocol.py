"""Protocol fingerprint: everything that decides whether two runs' metrics can be compared.

A test ROC AUC means nothing on its own: it depends on the dataset spec (tables, queries), the
label definition and horizon, how the test rows were chosen (split method, test start, purge) and
the data the source held. Every run records these as a fingerprint (MLflow run and model-version
tags `protocol.*`, `protocol.json`); promotion refuses to compare models whose fingerprints say
they answer different questions. The functions here are pure: they take texts and frames and
return plain dicts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

TAG_PREFIX = "protocol."


def spec_hash(spec_yaml: str, sql_files: Mapping[str, str]) -> str:
    """sha256 of the spec YAML and its SQL files (in name order): any change to what is read changes it."""
    digest = hashlib.sha256(spec_yaml.encode())
    for name in sorted(sql_files):
        digest.update(f"\0{name}\0".encode())
        digest.update(sql_files[name].encode())
    return digest.hexdigest()


def source_fingerprint(tables: Mapping[str, pd.DataFrame], time_indexes: Mapping[str, str | None]) -> dict[str, Any]:
    """Row count and latest time index per extracted table, plus a short hash of them all.

    Cheap to compute and enough to tell "same data" from "the source has grown or changed"
    (a new month of orders, a reloaded table); it is not a content hash.
    """
    per_table: dict[str, dict[str, Any]] = {}
    for name in sorted(tables):
        frame = tables[name]
        column = time_indexes.get(name)
        latest = pd.to_datetime(frame[column]).max() if column and column in frame.columns and len(frame) else None
        per_table[name] = {"rows": len(frame), "max_time": None if latest is None or pd.isna(latest) else latest.isoformat()}
    return {"tables": per_table, "hash": _short_hash(per_table)}


def fingerprint(
    spec_name: str,
    spec_digest: str,
    label_definition: str,
    horizon_days: int,
    split: Mapping[str, Any],
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """The run's protocol as one nested dict (stored as `protocol.json`)."""
    return {
        "spec": {"name": spec_name, "hash": spec_digest},
        "labels": {"definition": label_definition, "horizon_days": int(horizon_days)},
        "split": dict(split),
        "source": dict(source),
    }


def split_protocol(
    method: str, test_start: pd.Timestamp | None, purge: bool, test_size: float, valid_size: float, seed: int
) -> dict[str, Any]:
    """What decides the test rows. The seed only matters for a random split, so a time split omits it."""
    out: dict[str, Any] = {"method": method, "test_size": float(test_size), "valid_size": float(valid_size), "purge": bool(purge)}
    if method == "time":
        out["test_start"] = None if test_start is None else pd.Timestamp(test_start).isoformat()
    else:
        out["seed"] = int(seed)
    return out


def to_tags(fp: Mapping[str, Any]) -> dict[str, str]:
    """Flat `protocol.<section>.<key>` string tags; per-table source details stay in protocol.json."""
    tags: dict[str, str] = {}
    for section, values in fp.items():
        for key, value in values.items():
            if key == "tables":
                continue
            tags[f"{TAG_PREFIX}{section}.{key}"] = "" if value is None else str(value)
    return tags


def from_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """The `protocol.*` tags of a run or model version, prefix removed; empty if it has none."""
    return {key[len(TAG_PREFIX) :]: value for key, value in tags.items() if key.startswith(TAG_PREFIX)}


def differences(old: Mapping[str, str], new: Mapping[str, str], keys: tuple[str, ...]) -> dict[str, tuple[str | None, str | None]]:
    """{key: (old, new)} for the flat fingerprint keys whose values differ (missing counts as different)."""
    return {key: (old.get(key), new.get(key)) for key in keys if old.get(key) != new.get(key)}


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]
