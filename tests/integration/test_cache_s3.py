"""Step cache on S3 (SeaweedFS) with a PostgreSQL source: reuse, invalidation by a new source row,
and cache.enabled=false. The source fingerprint of a server is its per-query row count and
latest time index, so this also covers that path (the local tests use a SQLite file's stat)."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pipeline.ops.provision import ensure_postgres_databases
from pipeline.storage import S3Settings, S3Store
from tests.helpers import write_small_source
from tests.test_cache import STEPS, config, digests, forbid, reused, run_steps

if TYPE_CHECKING:
    from conftest import S3Server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]


@pytest.fixture
def pg_source(postgres_url: str, pg_database_names: Callable[[str], str]) -> str:
    """A small synthetic source in a PostgreSQL database of its own (the test adds a row to it)."""
    name = pg_database_names("cache_source")
    ensure_postgres_databases(postgres_url, [name])
    url = make_url(postgres_url).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    write_small_source(url, customers=120)
    return url


@pytest.fixture
def s3_overrides(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    bucket = f"cache-test-{secrets.token_hex(4)}"
    S3Store(bucket, settings=S3Settings(endpoint_url=s3_server.endpoint)).ensure_bucket()
    return {"uri": f"s3://{bucket}/pipeline", "s3_endpoint_url": s3_server.endpoint}


def test_steps_reuse_s3_cache_until_the_source_grows(tmp_path, pg_source, s3_overrides, caplog, monkeypatch) -> None:
    cfg = config(tmp_path, pg_source, storage=s3_overrides)
    run_steps(cfg, "first")
    objects = S3Store(cfg.storage.uri[5:].split("/")[0], "pipeline", S3Settings(endpoint_url=cfg.storage.s3_endpoint_url)).list("cache/")
    assert {key.split("/")[1] for key in objects if key.endswith("/manifest.json")} == set(STEPS)

    with monkeypatch.context() as patch:
        forbid(patch, *STEPS)
        with caplog.at_level(logging.INFO, logger="pipeline.cache"):
            run_steps(cfg, "second")
    assert reused(caplog) == dict.fromkeys(STEPS, "first")
    assert digests(cfg, "second") == digests(cfg, "first")

    engine = sa.create_engine(pg_source)
    with engine.begin() as conn:  # one more order line: the source's row count changes
        columns = [c["name"] for c in sa.inspect(conn).get_columns("salesorderdetail")]
        others = ", ".join(f'"{c}"' for c in columns if c != "salesorderdetailid")
        conn.execute(
            sa.text(
                f"INSERT INTO salesorderdetail (salesorderdetailid, {others}) SELECT salesorderdetailid + 1000000, {others} FROM salesorderdetail LIMIT 1"
            )
        )
    engine.dispose()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(cfg, "grown")
    assert reused(caplog) == {}

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="pipeline.cache"):
        run_steps(config(tmp_path, pg_source, storage=s3_overrides, cache={"enabled": False}), "forced")
    assert reused(caplog) == {}
    assert sum("computed, cached as" in r.getMessage() for r in caplog.records) == len(STEPS)


def test_a_run_rides_out_s3_down_for_30_s_between_steps(tmp_path, s3_overrides, free_tcp_port, caplog) -> None:
    """Injected: after labels, the S3 endpoint stops answering (listener and open connections
    gone) for 30 s. Counted: features and split wait it out within the default budget (90 s) and
    write complete outputs; the storage log names the retries."""
    from pipeline import steps
    from tests.integration.test_s3_store import DelayedProxy

    source = f"sqlite:///{tmp_path}/source.db"
    write_small_source(source, customers=120)
    upstream = s3_overrides["s3_endpoint_url"]
    proxied = {**s3_overrides, "s3_endpoint_url": f"http://127.0.0.1:{free_tcp_port}"}
    cfg = config(tmp_path, source, storage=proxied)
    art = steps.run_artifacts(cfg, "outage")
    proxy = DelayedProxy(upstream, free_tcp_port, delay=0)
    steps.extract(cfg, art)
    steps.make_labels(cfg, art)
    proxy.close()
    back = DelayedProxy(upstream, free_tcp_port, delay=30)
    started = time.monotonic()
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.storage"):
            steps.make_features(cfg, art)
            steps.split_and_encode(cfg, art)
    finally:
        back.close()
    waited = time.monotonic() - started
    print(f"features + split finished {waited:.1f} s after S3 went down for 30 s")
    assert 30 <= waited < cfg.storage.s3_outage_seconds
    assert any("retrying for up to" in r.getMessage() for r in caplog.records)
    direct = config(tmp_path, source, storage=s3_overrides)
    assert len(steps.load_part(steps.run_artifacts(direct, "outage"), "train")[0]) > 0
