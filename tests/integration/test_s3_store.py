"""S3Store and RunArtifacts against a real S3 server (SeaweedFS from the venv, or TEST_S3_ENDPOINT)."""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

from pipeline.storage import MANIFEST, RunArtifacts, S3Settings, S3Store
from tests.test_storage_types import assert_same_frame, typed_frame

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _store(s3: S3Server, bucket: str, **overrides: object) -> S3Store:
    settings = {"endpoint_url": s3.endpoint, "access_key_id": s3.access_key, "secret_access_key": s3.secret_key, **overrides}
    return S3Store(bucket, "it", S3Settings(**settings))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    name = f"store-test-{secrets.token_hex(4)}"
    _store(s3_server, name).ensure_bucket()
    return name


@pytest.fixture
def store(s3_server: S3Server, bucket: str) -> S3Store:
    return _store(s3_server, bucket)


def test_run_artifacts_round_trip_with_manifest_last(store: S3Store, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    put = store.put_bytes
    monkeypatch.setattr(store, "put_bytes", lambda key, data: (written.append(key), put(key, data))[1])
    frame = pd.DataFrame({"customer": [1, 2, 3], "churned": [True, False, True], "spend": np.array([1.5, 0.0, 7.25])})
    run = RunArtifacts(store, f"run-{secrets.token_hex(3)}")

    uri = run.put_frame("features", frame)
    run.put_json("metrics", {"roc_auc": 0.81})
    run.put_object("model", {"weights": [0.1, 0.2]})
    run.write_manifest({"status": "complete"})

    assert uri == f"s3://{store.bucket}/it/{run.prefix}/features.parquet"
    assert written[-1] == run.key(MANIFEST)
    pd.testing.assert_frame_equal(run.get_frame("features"), frame)
    assert run.get_json("metrics") == {"roc_auc": 0.81}
    assert run.get_object("model") == {"weights": [0.1, 0.2]}
    assert run.has("features.parquet") and not run.has("absent.parquet")
    names = ["features.parquet", "manifest.json", "metrics.json", "model.joblib"]
    assert store.list(run.prefix) == [f"{run.prefix}/{n}" for n in names]
    manifest = run.read_manifest()
    assert manifest["status"] == "complete" and set(manifest["artifacts"]) == set(names) - {"manifest.json"}
    assert manifest["artifacts"]["features.parquet"]["schema"]["spend"] == "double"  # arrow type names
    assert run.verify() == []


def test_every_logical_type_survives_s3(store: S3Store) -> None:
    run = RunArtifacts(store, f"run-{secrets.token_hex(3)}")
    frame = typed_frame()
    run.put_frame("features", frame)
    assert_same_frame(run.get_frame("features"), frame)


def test_verify_detects_tampered_and_missing_objects(store: S3Store) -> None:
    run = RunArtifacts(store, f"run-{secrets.token_hex(3)}")
    run.put_json("a", {"x": 1})
    run.put_json("b", {"x": 2})
    run.write_manifest()

    store.put_bytes(run.key("a.json"), b'{"x": 666}')
    store.client.delete_object(Bucket=store.bucket, Key=store._key(run.key("b.json")))

    assert sorted(run.verify()) == ["a.json", "b.json"]


def test_missing_key_and_bucket_raise_file_not_found(s3_server: S3Server, store: S3Store) -> None:
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        store.get_bytes("runs/nothing-here.json")
    assert store.exists("runs/nothing-here.json") is False
    with pytest.raises(FileNotFoundError, match="NoSuchBucket"):
        _store(s3_server, f"absent-{secrets.token_hex(4)}").get_bytes("x")


def test_wrong_secret_is_a_clear_error_without_retries(s3_server: S3Server, bucket: str) -> None:
    bad = _store(s3_server, bucket, secret_access_key="not-the-secret")
    started = time.monotonic()
    with pytest.raises(PermissionError, match="SignatureDoesNotMatch.*AWS_SECRET_ACCESS_KEY") as err:
        bad.put_bytes("k", b"v")
    assert s3_server.endpoint in str(err.value)
    with pytest.raises(PermissionError):  # HEAD has no error body: a 403 must not read as "missing"
        bad.exists("k")
    assert time.monotonic() - started < 5


def test_an_endpoint_down_past_the_budget_is_an_error_naming_it(bucket: str, free_tcp_port: int) -> None:
    endpoint = f"http://127.0.0.1:{free_tcp_port}"
    settings = S3Settings(endpoint_url=endpoint, access_key_id="k", secret_access_key="s", retry_seconds=4)
    store = S3Store(bucket, settings=settings)
    started = time.monotonic()
    with pytest.raises(ConnectionError, match=f"at {endpoint} failed after"):
        store.get_bytes("anything")
    assert time.monotonic() - started < 15  # the configured budget (storage.s3_outage_seconds), not botocore's minutes


class DelayedProxy:
    """A TCP forwarder to `target` that only starts listening after `delay` seconds; `close()`
    takes it down with every connection it carries (an outage, as clients see one)."""

    def __init__(self, target: str, port: int, delay: float):
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = port
        self.stopped = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, args=(delay,), daemon=True)
        self.thread.start()

    def _serve(self, delay: float) -> None:
        if self.stopped.wait(delay):
            return
        with socket.create_server(("127.0.0.1", self.port)) as server:
            server.settimeout(0.1)
            while not self.stopped.is_set():
                try:
                    client, _ = server.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                self.sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


def test_transient_connection_failure_is_retried(
    s3_server: S3Server, store: S3Store, free_tcp_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """S3 unreachable for 10 s (injected: nothing listens until then): the write waits it out with
    the default budget (90 s) and lands intact."""
    proxy = DelayedProxy(s3_server.endpoint, free_tcp_port, delay=10)
    late = _store(s3_server, store.bucket, endpoint_url=f"http://127.0.0.1:{proxy.port}")
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.storage"):
            late.put_bytes("late/object.bin", b"payload")
    finally:
        proxy.close()
    print(f"write landed {time.monotonic() - started:.1f} s after the outage began")
    assert time.monotonic() - started >= 10
    assert any("retry" in r.getMessage() for r in caplog.records)
    assert store.get_bytes("late/object.bin") == b"payload"


def test_the_pre_run_check_names_a_missing_bucket_and_creates_nothing(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.checks import check_storage
    from pipeline.config import load_config

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    typo = f"{bucket}-typo"
    cfg = load_config(overrides={"storage": {"uri": f"s3://{typo}/runs", "s3_endpoint_url": s3_server.endpoint}})
    problems = [str(p) for p in check_storage(cfg)]
    assert problems == [f"storage: bucket '{typo}' does not exist at {s3_server.endpoint}: check storage.uri, or create it"]
    with pytest.raises(FileNotFoundError):  # the check did not create it
        _store(s3_server, typo).list()
    cfg = load_config(overrides={"storage": {"uri": f"s3://{bucket}/runs", "s3_endpoint_url": s3_server.endpoint}})
    assert check_storage(cfg) == []
