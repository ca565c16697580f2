"""Artifact store: the only way data moves between pipeline steps and machines.

Steps exchange DataFrames, fitted objects and JSON through a store addressed by
URI (a local folder now, S3 when workers share nothing). Everything a run writes
sits under one run prefix and is listed, with sizes, sha256 and schemas, in a
manifest that is written last, so a reader can tell a finished run from a
half-written one.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import joblib
import pandas as pd

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
T = TypeVar("T")


class ArtifactStore(ABC):
    """Bytes by key, under a root URI."""

    root_uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]: ...

    def uri(self, key: str) -> str:
        return f"{self.root_uri.rstrip('/')}/{key}"


class LocalStore(ArtifactStore):
    """A folder on local disk (the embedded default)."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root_uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents and path != self.root:
            raise ValueError(f"artifact key {key!r} escapes the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: readers never see half a file

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.exists():
            raise FileNotFoundError(f"no artifact {key!r} in {self.root}")
        return path.read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> list[str]:
        base = self.root / prefix
        if base.is_file():
            return [prefix]
        if not base.exists():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))


@dataclass(frozen=True)
class S3Settings:
    """Where and how to reach S3; credentials fall back to the standard AWS_* variables.

    Each request is retried by botocore's own retry mode (`retry_mode`: standard, or adaptive,
    which also rate-limits the client under throttling): up to `max_attempts` attempts with
    exponential backoff and full jitter, on connection errors, 5xx and throttling only. An outage
    longer than that is ridden out for `retry_seconds` in all (storage.s3_outage_seconds), then the
    request fails naming the endpoint (`S3Store._call` says why botocore alone cannot do that).
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    max_attempts: int = 5  # per request, the first included (botocore total_max_attempts): a blip costs under a second
    retry_seconds: float = 90.0
    connect_timeout: float = 3.0
    read_timeout: float = 60.0
    retry_mode: str = "standard"


_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500"}
_AUTH_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound", "NoSuchBucket"}


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


OUTAGE_PAUSE = 2.0  # seconds between rounds of botocore's attempts while an outage lasts


def _raise_if_certain(where: str, exc: Exception) -> None:
    """Missing keys, refused credentials and other non-transient errors: raised at once, as builtins."""
    from botocore.exceptions import NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        raise PermissionError(f"{where}: no credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from exc
    code = _error_code(exc)
    if code in _MISSING_CODES:
        raise FileNotFoundError(f"{where}: {code}") from exc
    if code in _AUTH_CODES:
        raise PermissionError(f"{where} was denied ({code}): check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and the bucket policy") from exc
    if not _is_transient(exc):
        raise exc


def _is_transient(exc: Exception) -> bool:
    """Connection-level errors and server-side 5xx/throttling, never auth or missing keys."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError

    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _error_code(exc) in _TRANSIENT_CODES or status >= 500
    return isinstance(exc, (ConnectionError, HTTPClientError, IncompleteReadError))


class S3Store(ArtifactStore):
    """An S3 bucket/prefix (MinIO, SeaweedFS or AWS), path-style addressing, retries with backoff.

    Errors come out as builtin exceptions that name the endpoint: FileNotFoundError (missing key
    or bucket), PermissionError (credentials rejected), ConnectionError (unreachable after retries).
    """

    def __init__(self, bucket: str, prefix: str = "", settings: S3Settings | None = None):
        import boto3
        from botocore.config import Config

        self.settings = settings or S3Settings()
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root_uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"),
            region_name=self.settings.region,
            aws_access_key_id=self.settings.access_key_id,
            aws_secret_access_key=self.settings.secret_access_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": self.settings.max_attempts, "mode": self.settings.retry_mode},
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
            ),
        )
        self.endpoint = self.client.meta.endpoint_url

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run `call` (botocore retries it); past botocore's attempts, repeat it until the outage
        budget is spent; translate failures into errors naming the endpoint.

        Why a loop on top of botocore's retry mode: botocore counts attempts, never time. Its backoff
        is random (full jitter, capped at 20 s), so no `max_attempts` maps to a time budget (the same
        count lasts from a second to minutes), and its retry quota (500 tokens, 14 per retry, per
        client) runs dry in a long outage, after which it stops retrying at all. This loop only adds
        the deadline: it re-issues the call every `OUTAGE_PAUSE` seconds while the error is
        transient, and nothing is retried that botocore would not retry (no tenacity in the
        environment, and one loop of a few lines does not justify a dependency).
        """
        from botocore.exceptions import BotoCoreError, ClientError

        where = f"S3 {what} at {self.endpoint}"
        started = time.monotonic()
        rounds = 0
        while True:
            try:
                return call()
            except (BotoCoreError, ClientError) as exc:
                _raise_if_certain(where, exc)
                rounds += 1
                elapsed = time.monotonic() - started
                if elapsed + OUTAGE_PAUSE > self.settings.retry_seconds:
                    raise ConnectionError(
                        f"{where} failed after {rounds} x {self.settings.max_attempts} attempts in {elapsed:.1f} s "
                        f"(storage.s3_outage_seconds={self.settings.retry_seconds:g}): {exc}"
                    ) from exc
                log.warning(
                    "%s failed (%s) after botocore's %d attempts: retrying for up to %.0f s more",
                    where,
                    _error_code(exc) or type(exc).__name__,
                    self.settings.max_attempts,
                    self.settings.retry_seconds - elapsed,
                )
            time.sleep(OUTAGE_PAUSE)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(f"put {self._key(key)}", lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._call(
                f"get {self._key(key)}", lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            )
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"no artifact {key!r} in {self.root_uri} ({exc})") from exc

    def exists(self, key: str) -> bool:
        try:
            self._call(f"head {self._key(key)}", lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
            return True
        except FileNotFoundError:
            return False

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(f"list {full}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full)))
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in keys)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent)."""
        from botocore.exceptions import ClientError

        try:
            self._call(f"head bucket {self.bucket}", lambda: self.client.head_bucket(Bucket=self.bucket))
        except FileNotFoundError:
            try:
                self._call(f"create bucket {self.bucket}", lambda: self.client.create_bucket(Bucket=self.bucket))
            except ClientError as exc:
                if _error_code(exc) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                    raise


def open_store(uri: str, s3: S3Settings | None = None) -> ArtifactStore:
    """A store for `uri`: `s3://bucket/prefix`, `file:///abs/dir` or a plain path."""
    if uri.startswith("s3://"):
        bucket, _, prefix = uri[5:].partition("/")
        return S3Store(bucket, prefix, s3)
    if uri.startswith("file://"):
        uri = uri[7:]
    return LocalStore(uri)


# --- typed payloads ------------------------------------------------------------------------------


# Parquet keeps dictionary encoding only for text: a `category` column with numeric (or date)
# categories comes back as plain numbers, its categories and ordered flag lost. Every category
# column's dtype is therefore recorded in the file's schema metadata and restored on read.
CATEGORICALS_KEY = b"pipeline.categoricals"


def _categorical_dtypes(df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    return {
        str(col): {"categories": dtype.categories.tolist(), "dtype": str(dtype.categories.dtype), "ordered": bool(dtype.ordered)}
        for col, dtype in df.dtypes.items()
        if isinstance(dtype, pd.CategoricalDtype)
    }


def frame_to_bytes(df: pd.DataFrame) -> bytes:
    """Parquet bytes (index included) that read back with every `category` dtype intact."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, preserve_index=True)
    categoricals = _categorical_dtypes(df)
    if categoricals:
        metadata = {**(table.schema.metadata or {}), CATEGORICALS_KEY: json.dumps(categoricals, default=str).encode()}
        table = table.replace_schema_metadata(metadata)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def frame_from_bytes(data: bytes) -> pd.DataFrame:
    """The frame `frame_to_bytes` wrote; category columns get back their exact categories and order."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    categoricals = json.loads((table.schema.metadata or {}).get(CATEGORICALS_KEY, b"{}"))
    # read as category straight from arrow values: no detour through float for integers with nulls
    frame = table.to_pandas(categories=list(categoricals))
    for col, saved in categoricals.items():
        categories = pd.Index(saved["categories"], dtype=saved["dtype"])
        frame[col] = frame[col].cat.set_categories(categories, ordered=saved["ordered"])
    return frame


def object_to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def object_from_bytes(data: bytes) -> Any:
    return joblib.load(io.BytesIO(data))


def json_to_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


def parquet_schema(data: bytes) -> dict[str, str]:
    import pyarrow.parquet as pq

    return {field.name: str(field.type) for field in pq.read_schema(io.BytesIO(data))}


@dataclass
class RunArtifacts:
    """Artifacts of one run under `<store>/runs/<run_id>/`, with a manifest written last.

    Steps of one run may write from different processes or machines, so the manifest
    is built from what the store holds under the run prefix, not from memory.
    """

    store: ArtifactStore
    run_id: str

    @property
    def prefix(self) -> str:
        return f"runs/{self.run_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put_bytes(self, name: str, data: bytes) -> str:
        key = self.key(name)
        self.store.put_bytes(key, data)
        return self.store.uri(key)

    def put_frame(self, name: str, df: pd.DataFrame) -> str:
        return self.put_bytes(f"{name}.parquet", frame_to_bytes(df))

    def put_object(self, name: str, obj: Any) -> str:
        return self.put_bytes(f"{name}.joblib", object_to_bytes(obj))

    def put_json(self, name: str, obj: Any) -> str:
        return self.put_bytes(f"{name}.json", json_to_bytes(obj))

    def put_file(self, name: str, path: str | Path) -> str:
        return self.put_bytes(name, Path(path).read_bytes())

    def get_bytes(self, name: str) -> bytes:
        return self.store.get_bytes(self.key(name))

    def get_frame(self, name: str) -> pd.DataFrame:
        return frame_from_bytes(self.get_bytes(f"{name}.parquet"))

    def get_object(self, name: str) -> Any:
        return object_from_bytes(self.get_bytes(f"{name}.joblib"))

    def get_json(self, name: str) -> Any:
        return json.loads(self.get_bytes(f"{name}.json"))

    def has(self, name: str) -> bool:
        return self.store.exists(self.key(name))

    def describe(self, name: str) -> dict[str, Any]:
        """Key, size, sha256 and (for parquet) schema of one stored artifact."""
        data = self.get_bytes(name)
        entry: dict[str, Any] = {"key": self.key(name), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if name.endswith(".parquet"):
            entry["schema"] = parquet_schema(data)
        return entry

    def write_manifest(self, extra: dict[str, Any] | None = None) -> str:
        """Write the manifest last: its presence marks the run's intermediates as complete."""
        names = [k[len(self.prefix) + 1 :] for k in self.store.list(self.prefix + "/")]
        artifacts = {name: self.describe(name) for name in names if name != MANIFEST}
        manifest = {"run_id": self.run_id, "artifacts": artifacts, **(extra or {})}
        return self.put_bytes(MANIFEST, json_to_bytes(manifest))

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.get_bytes(MANIFEST))

    def verify(self) -> list[str]:
        """Names of manifest entries whose stored bytes are missing or differ from the manifest."""
        bad = []
        for name, entry in self.read_manifest()["artifacts"].items():
            try:
                data = self.store.get_bytes(entry["key"])
            except FileNotFoundError:
                bad.append(name)
                continue
            if hashlib.sha256(data).hexdigest() != entry["sha256"] or len(data) != entry["size"]:
                bad.append(name)
        return bad
