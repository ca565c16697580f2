"""`make bench QUICK=1`: the benchmark runs end to end on synthetic data and writes its report and JSON.

Asserts only that the report and the results are produced with the keys the report is built
from; never a time or a score (those depend on the machine and are the benchmark's business).
The topology part starts a private stack, so PostgreSQL and MariaDB must be there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.ops.provision import check_database
from pipeline.ops.state import StackError

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(1200)]
PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def servers() -> None:
    try:
        check_database("PostgreSQL", os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"))
    except StackError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def test_quick_benchmark_writes_the_report_and_its_results(tmp_path: Path, servers: None) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE__")}
    subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)], check=True, cwd=PROJECT, env=env, timeout=1100)

    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")}
    assert {"machine", "quality", "reference_tuning", "topology", "scale"} <= set(results)
    assert results["machine"]["quick"] is True
    assert any("published" in key and "auc" in key for key in results["quality"])
    assert any("workers" in key and "ratio" in key for key in results["topology"])
    assert set(results["quality"]["purge_sweep_auc"]) == {"180", "120", "60", "0"}
    assert list(results["scale"]["factors"]) == [str(f) for f in results["machine"]["sizes"]["scale_factors"]]

    report = (tmp_path / "REPORT.md").read_text()
    for section in ("## Headline", "## Quality on AdventureWorks", "## Tuning against the reference design", "## Scale simulation"):
        assert section in report
    for plot in ("auc.png", "roc.png", "purge.png", "scale.png"):
        assert (tmp_path / plot).read_bytes().startswith(b"\x89PNG")
