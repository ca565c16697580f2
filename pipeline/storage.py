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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

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
    """Where and how to reach S3; credentials fall back to the standard AWS_* variables."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None
    max_attempts: int = 8


def _with_retries(what: str, call: Callable[[], T], attempts: int = 5, first_wait: float = 0.5) -> T:
    """Retry transient S3 failures with exponential backoff (botocore retries connection errors too)."""
    from botocore.exceptions import BotoCoreError, ClientError

    for attempt in range(1, attempts + 1):
        try:
            return call()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in {"NoSuchKey", "404", "NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
                raise
            if attempt == attempts:
                raise
            log.warning("S3 %s failed (%s), retry %d/%d", what, code, attempt, attempts - 1)
        except BotoCoreError as exc:
            if attempt == attempts:
                raise
            log.warning("S3 %s failed (%s), retry %d/%d", what, type(exc).__name__, attempt, attempts - 1)
        time.sleep(first_wait * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


class S3Store(ArtifactStore):
    """An S3 bucket/prefix (MinIO, SeaweedFS or AWS), path-style addressing, retries with backoff."""

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
                retries={"max_attempts": self.settings.max_attempts, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        _with_retries(f"put {key}", lambda: self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data))

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            obj = _with_retries(f"get {key}", lambda: self.client.get_object(Bucket=self.bucket, Key=self._key(key)))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                raise FileNotFoundError(f"no artifact {key!r} in {self.root_uri}") from exc
            raise
        return obj["Body"].read()

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            _with_retries(f"head {key}", lambda: self.client.head_object(Bucket=self.bucket, Key=self._key(key)))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return False
            raise

    def list(self, prefix: str = "") -> list[str]:
        full = self._key(prefix)
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in _with_retries(f"list {prefix}", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=full))):
            keys += [o["Key"] for o in page.get("Contents", [])]
        strip = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[strip:] for k in keys)

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent)."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
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


def frame_to_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=True)
    return buf.getvalue()


def frame_from_bytes(data: bytes) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(data))


def object_to_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf)
    return buf.getvalue()


def object_from_bytes(data: bytes) -> Any:
    return joblib.load(io.BytesIO(data))


def json_to_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()


@dataclass
class RunArtifacts:
    """Artifacts of one run under `<store>/runs/<run_id>/`, with a manifest written last."""

    store: ArtifactStore
    run_id: str
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"runs/{self.run_id}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def _put(self, name: str, data: bytes, kind: str, schema: dict[str, str] | None = None) -> str:
        key = self.key(name)
        self.store.put_bytes(key, data)
        self.entries[name] = {
            "key": key,
            "kind": kind,
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **({"schema": schema} if schema is not None else {}),
        }
        return self.store.uri(key)

    def put_frame(self, name: str, df: pd.DataFrame) -> str:
        schema = {str(c): str(t) for c, t in df.dtypes.items()}
        return self._put(f"{name}.parquet", frame_to_bytes(df), "parquet", schema)

    def put_object(self, name: str, obj: Any) -> str:
        return self._put(f"{name}.joblib", object_to_bytes(obj), "joblib")

    def put_json(self, name: str, obj: Any) -> str:
        return self._put(f"{name}.json", json_to_bytes(obj), "json")

    def put_file(self, name: str, path: str | Path) -> str:
        return self._put(name, Path(path).read_bytes(), "file")

    def get_frame(self, name: str) -> pd.DataFrame:
        return frame_from_bytes(self.store.get_bytes(self.key(f"{name}.parquet")))

    def get_object(self, name: str) -> Any:
        return object_from_bytes(self.store.get_bytes(self.key(f"{name}.joblib")))

    def get_json(self, name: str) -> Any:
        return json.loads(self.store.get_bytes(self.key(f"{name}.json")))

    def has(self, name: str) -> bool:
        return self.store.exists(self.key(name))

    def write_manifest(self, extra: dict[str, Any] | None = None) -> str:
        """Write the manifest last: its presence marks the run's intermediates as complete."""
        manifest = {"run_id": self.run_id, "artifacts": self.entries, **(extra or {})}
        self.store.put_bytes(self.key(MANIFEST), json_to_bytes(manifest))
        return self.store.uri(self.key(MANIFEST))

    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.store.get_bytes(self.key(MANIFEST)))

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
