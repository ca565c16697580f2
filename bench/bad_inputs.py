"""How fast and how clearly `python -m pipeline run` refuses each bad input of the reliability issue.

Usage: .venv/bin/python -m bench.bad_inputs [--out bench/results/bad_inputs.json]

Each case is a real `run` in a fresh process (its imports included) against real servers: a small
synthetic SQLite source, the shared MariaDB (wrong password) and PostgreSQL (missing database), a
closed port, and a private SeaweedFS S3 server (mistyped bucket). `load-csv` gets a Latin-1 CSV.
Reported per case: wall seconds, exit code, the `error:` lines on stderr (progress lines aside) and
whether a traceback was printed. The CSV case needs AW_DATA_DIR (its files linked, one re-encoded).
Epoch-integer dates are not a failure (they are converted with a warning), so they are not here.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipeline.data.synthetic import write_synthetic
from pipeline.ops.servers import free_port, free_port_block, start_seaweedfs
from pipeline.ops.supervise import stop_process
from pipeline.spec import PACKAGED

PROJECT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).with_name("results") / "bad_inputs.json"
BOUND_SECONDS = 15


def spec_copy(folder: Path, spec_edit=None, sql_edit=None, drop_sql: str | None = None) -> str:
    """The packaged AdventureWorks spec with one mistake in it."""
    shutil.copytree(PACKAGED / "adventureworks", folder)
    spec = folder / "spec.yaml"
    if spec_edit:
        spec.write_text(spec_edit(spec.read_text()))
    if sql_edit:
        name, edit = sql_edit
        (folder / "sql" / name).write_text(edit((folder / "sql" / name).read_text()))
    if drop_sql:
        (folder / "sql" / drop_sql).unlink()
    return str(spec)


def null_customer_source(source: Path, target: Path) -> str:
    shutil.copy(source, target)
    with sqlite3.connect(target) as db:
        db.execute(
            "UPDATE SalesOrderHeader SET CustomerID = NULL WHERE SalesOrderID IN (SELECT SalesOrderID FROM SalesOrderHeader LIMIT 3)"
        )
    return f"sqlite:///{target}"


def latin1_csvs(folder: Path) -> Path | None:
    """The real AdventureWorks CSVs (linked, AW_DATA_DIR) with person_person.csv re-encoded as Latin-1."""
    source = os.environ.get("AW_DATA_DIR")
    if not source:
        return None
    folder.mkdir()
    for csv in Path(source).glob("*.csv"):
        (folder / csv.name).symlink_to(csv)
    person = folder / "person_person.csv"
    text = person.read_text(encoding="utf-8")
    person.unlink()
    person.write_bytes(text.encode("latin-1", errors="replace") + "1,Mu\u00f1oz\n".encode("latin-1"))
    return folder


def cases(tmp: Path, source: Path, s3: tuple[str, str, str]) -> dict[str, list[str]]:
    url = f"sqlite:///{source}"
    endpoint, key, secret = s3
    closed = free_port()
    return {
        "missing SQL file of a spec entry": [
            "--set",
            f"data.url={url}",
            "--set",
            f"data.spec={spec_copy(tmp / 's1', drop_sql='orders.sql')}",
        ],
        "typo'd column in the SQL": [
            "--set",
            f"data.url={url}",
            "--set",
            f"data.spec={spec_copy(tmp / 's2', sql_edit=('orders.sql', lambda t: t.replace('SalesPersonID', 'SalesPersnID')))}",
        ],
        "mistyped logical type (Integr)": [
            "--set",
            f"data.url={url}",
            "--set",
            f"data.spec={spec_copy(tmp / 's3', spec_edit=lambda t: t.replace('CustomerID: Integer', 'CustomerID: Integr', 1))}",
        ],
        "wrong password (MariaDB)": ["--set", "data.url=mysql+pymysql://churn_nobody:wrong@127.0.0.1:3306/adventureworks"],
        "missing database (PostgreSQL)": ["--set", "data.url=postgresql+psycopg2://postgres@127.0.0.1:5432/no_such_database"],
        "closed port": ["--set", f"data.url=postgresql+psycopg2://postgres:secret@127.0.0.1:{closed}/db"],
        "NULL customer key in the orders": ["--set", f"data.url={null_customer_source(source, tmp / 'nulls.db')}"],
        "mistyped bucket": [
            "--set",
            f"data.url={url}",
            "--set",
            "storage.uri=s3://churn-dta/runs",
            "--set",
            f"storage.s3_endpoint_url={endpoint}",
            "--env",
            f"AWS_ACCESS_KEY_ID={key}",
            "--env",
            f"AWS_SECRET_ACCESS_KEY={secret}",
        ],
    }


def run_case(argv: list[str], work_dir: Path, command: str = "run") -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIPELINE__", "PREFECT_API", "MLFLOW_", "AWS_"))}
    args = ["--set", f"paths.work_dir={work_dir}"] if command == "run" else []
    while argv:
        flag, value, *argv = argv
        if flag == "--env":
            name, _, text = value.partition("=")
            env[name] = text
        else:
            args += [flag, value]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", command, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("error")]
    return {
        "seconds": round(time.monotonic() - started, 2),
        "exit_code": done.returncode,
        "error_lines": len(errors),
        "traceback": "Traceback" in done.stderr,
        "error": errors[-1] if errors else done.stderr[-300:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESULTS)
    out = parser.parse_args().out
    with tempfile.TemporaryDirectory(prefix="bad-inputs-") as folder:
        tmp = Path(folder)
        source = tmp / "source.db"
        write_synthetic(f"sqlite:///{source}", customers=200)
        key, secret, port = "bench", secrets.token_hex(16), free_port_block()
        weed = start_seaweedfs(tmp / "weed", "127.0.0.1", port, key, secret, timeout=60)
        try:
            results = {
                name: run_case(argv, tmp / "work") for name, argv in cases(tmp, source, (f"http://127.0.0.1:{port}", key, secret)).items()
            }
            if csvs := latin1_csvs(tmp / "csv"):
                load_csv = ["--dir", str(csvs), "--url", f"sqlite:///{tmp / 'csv.db'}"]
                results["non-UTF-8 CSV (load-csv)"] = run_case(load_csv, tmp / "work", command="load-csv")
        finally:
            stop_process(weed.pid)
    report = {"bound_seconds": BOUND_SECONDS, "load_average_at_end": os.getloadavg()[0], "cases": results}
    report["max_seconds"] = max(r["seconds"] for r in results.values())
    report["all_exit_2_one_line_within_bound"] = all(
        r["exit_code"] == 2 and r["error_lines"] == 1 and not r["traceback"] and r["seconds"] < BOUND_SECONDS for r in results.values()
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, r in results.items():
        print(f"{r['seconds']:6.1f} s  exit {r['exit_code']}  {r['error_lines']} error line(s)  {name}: {r['error'][:150]}")
    print(f"all exit 2 with one line in under {BOUND_SECONDS} s: {report['all_exit_2_one_line_within_bound']}")


if __name__ == "__main__":
    main()
