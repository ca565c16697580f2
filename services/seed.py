"""One-shot job: fill the source database, once.

* Real AdventureWorks CSV files mounted at AW_CSV_MOUNT (default /data/adventureworks, from
  AW_CSV_DIR on the host) -> `python -m pipeline load-csv`.
* Otherwise the synthetic AdventureWorks-shaped data -> `python -m pipeline generate-data`
  (SEED_CUSTOMERS customers, random seed SEED_RANDOM_SEED).

Idempotent: a marker table (`churn_seed_info`) records a fingerprint of what was loaded; when it
matches and the tables are there, nothing is written. SEED_FORCE=1 reloads anyway.
The database URL (a user allowed to create tables in the source database) is SOURCE_DB_LOADER_URL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

MARKER = "churn_seed_info"
PROBE_TABLE = "SalesOrderHeader"


def log(msg: str) -> None:
    print(f"seed: {msg}", flush=True)


def fingerprint(csv_dir: Path) -> tuple[str, list[str]]:
    csvs = sorted(csv_dir.glob("*.csv")) if csv_dir.is_dir() else []
    if csvs:
        digest = hashlib.sha256()
        manifest = csv_dir / "manifest.json"
        if manifest.is_file():
            digest.update(manifest.read_bytes())
        for path in csvs:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
        return f"csv:{digest.hexdigest()[:16]}", ["load-csv", "--dir", str(csv_dir)]
    customers = os.environ.get("SEED_CUSTOMERS", "1500")
    seed = os.environ.get("SEED_RANDOM_SEED", "7")
    return f"synthetic:customers={customers}:seed={seed}", [
        "generate-data",
        "--customers",
        customers,
        "--seed",
        seed,
    ]


def connect(url: str, timeout: float = 120) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return engine
        except sa.exc.OperationalError as exc:
            if time.monotonic() > deadline:
                raise SystemExit(f"seed: cannot connect to the source database: {exc.orig}") from None
            time.sleep(2)


def current_marker(engine: sa.Engine) -> str | None:
    names = {n.lower() for n in sa.inspect(engine).get_table_names()}
    if MARKER not in names or PROBE_TABLE.lower() not in names:
        return None
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT fingerprint FROM {MARKER} ORDER BY seeded_at DESC LIMIT 1")).first()
    return row[0] if row else None


def write_marker(engine: sa.Engine, value: str) -> None:
    meta = sa.MetaData()
    table = sa.Table(
        MARKER,
        meta,
        sa.Column("fingerprint", sa.String(255), nullable=False),
        sa.Column("seeded_at", sa.String(32), nullable=False),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(table.insert().values(fingerprint=value, seeded_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds")))


def main() -> int:
    url = os.environ.get("SOURCE_DB_LOADER_URL")
    if not url:
        log("SOURCE_DB_LOADER_URL is not set")
        return 2
    csv_dir = Path(os.environ.get("AW_CSV_MOUNT", "/data/adventureworks"))
    wanted, command = fingerprint(csv_dir)
    engine = connect(url)
    have = current_marker(engine)
    force = os.environ.get("SEED_FORCE", "").lower() in ("1", "true", "yes")
    if have == wanted and not force:
        log(f"source database already holds {wanted}: nothing to do")
        return 0
    log(f"loading {wanted} (was: {have or 'empty'})")
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "pipeline", *command, "--url", url])
    if result.returncode != 0:
        log(f"`python -m pipeline {command[0]}` failed with exit status {result.returncode}")
        return result.returncode
    write_marker(engine, wanted)
    log(f"done in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
