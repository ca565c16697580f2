"""Faults and load on the Optuna database. The restart: the Optuna database restarts mid-study. A private MariaDB (own data directory, socket and
port; never the machine's shared server) is stopped while a shard runs trials and started again
3 s later; the shard waits for it and finishes the study, no trial counted twice or left RUNNING."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.long, pytest.mark.timeout(300)]
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateMariaDB:
    """mariadb-install-db + mariadbd in a folder of its own, as the `mysql` user; start/stop at will."""

    def __init__(self, root: Path):
        self.root, self.port = root, _free_port()
        self.datadir, self.socket = root / "data", root / "mysqld.sock"
        self.proc: subprocess.Popen | None = None
        subprocess.run(
            [
                "mariadb-install-db",
                f"--datadir={self.datadir}",
                "--user=mysql",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        log = open(self.root / "mariadbd.log", "ab")  # noqa: SIM115 - the server's own log, kept open while it runs
        self.proc = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--user=mysql",
                f"--pid-file={self.root / 'mariadbd.pid'}",
                "--skip-log-bin",
            ],
            stdout=log,
            stderr=log,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"private MariaDB did not start: {(self.root / 'mariadbd.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)

    def user_url(self) -> str:
        import pymysql

        password = secrets.token_hex(12)
        with pymysql.connect(unix_socket=str(self.socket), user="root", autocommit=True) as conn, conn.cursor() as cur:
            cur.execute("CREATE DATABASE optuna")
            cur.execute("CREATE USER 'optuna'@'127.0.0.1' IDENTIFIED BY %s", (password,))
            cur.execute("CREATE USER 'optuna'@'localhost' IDENTIFIED BY %s", (password,))
            cur.execute("GRANT ALL ON optuna.* TO 'optuna'@'127.0.0.1'")
            cur.execute("GRANT ALL ON optuna.* TO 'optuna'@'localhost'")
        return f"mysql+pymysql://optuna:{password}@127.0.0.1:{self.port}/optuna"


@pytest.fixture
def mariadb() -> Iterator[PrivateMariaDB]:
    if not shutil.which("mariadb-install-db"):
        pytest.skip("no mariadb-install-db")
    root = Path(tempfile.mkdtemp(prefix="churn-mariadb-", dir="/tmp"))
    root.chmod(0o755)
    shutil.chown(root, "mysql", "mysql")
    server = PrivateMariaDB(root)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_a_shard_rides_out_an_optuna_database_restart(mariadb: PrivateMariaDB, caplog: pytest.LogCaptureFixture) -> None:
    import optuna
    from optuna.trial import TrialState

    from pipeline import tuning

    target = 10
    storage_url = mariadb.user_url()
    study = optuna.create_study(study_name="outage", storage=tuning.create_storage(storage_url, heartbeat_interval=1), direction="maximize")

    def objective(trial: optuna.Trial) -> float:  # about 1.5 s, reporting to the storage as it goes
        x = trial.suggest_float("x", 0, 1)
        for step in range(6):
            trial.report(x * step, step)
            time.sleep(0.25)
        trial.set_user_attr("pid", os.getpid())
        return x

    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(tuning.run_shard(study, objective, target, 240, "shard-0", storage_outage_s=60)))
    with caplog.at_level(logging.WARNING, logger="pipeline.tuning"):
        worker.start()
        while sum(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)) < 3:
            time.sleep(0.2)
        mariadb.stop()  # mid-trial: injected outage
        time.sleep(3)
        mariadb.start()
        worker.join(timeout=240)
    assert not worker.is_alive() and done, "the shard did not finish"

    trials = optuna.load_study(study_name="outage", storage=tuning.create_storage(storage_url)).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    complete, failed = states.count(TrialState.COMPLETE), states.count(TrialState.FAIL)
    print(f"trials: {complete} complete, {failed} failed, {states.count(TrialState.RUNNING)} running, {len(trials)} in all")
    assert "Optuna storage" in caplog.text, "the outage was not noticed: it did not hit the shard"
    assert complete == target  # the study finished: nothing lost
    assert TrialState.RUNNING not in states  # nothing left half-done
    assert len({t.number for t in trials}) == len(trials)  # nothing counted twice
    assert failed <= 2  # at most the trial(s) the outage broke


def _load_worker(url: str, seconds: float, index: int) -> None:
    """One of the load test's processes: very short trials on the shared study, for `seconds`."""
    import optuna

    from pipeline import tuning

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="load", storage=tuning.create_storage(url, heartbeat_interval=2))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 0)
        trial.set_user_attr("worker", index)
        return x

    study.optimize(objective, timeout=seconds, gc_after_trial=False)


def test_eight_workers_on_one_study_no_deadlock_nothing_lost_or_doubled(mariadb: PrivateMariaDB) -> None:
    """Load: 8 processes (on 2 cores) run very short trials on one MariaDB study for 20 s.

    Documented bound: at most 3 database connections per worker process (its pooled session and
    the trial heartbeat; measured here: 18 for 8 workers with the test's own)."""
    import multiprocessing

    import optuna
    import pymysql
    from optuna.trial import TrialState

    from pipeline import tuning

    url = mariadb.user_url()
    optuna.create_study(study_name="load", storage=tuning.create_storage(url, heartbeat_interval=2), direction="maximize")
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_load_worker, args=(url, 20, i)) for i in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * 8, "a worker crashed or hung (deadlock?)"

    trials = optuna.load_study(study_name="load", storage=tuning.create_storage(url)).get_trials(deepcopy=False)
    states = [t.state for t in trials]
    with pymysql.connect(unix_socket=str(mariadb.socket), user="root") as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
        peak = int(cur.fetchone()[1])
    per_worker = {w: sum(t.user_attrs.get("worker") == w for t in trials) for w in range(8)}
    print(
        f"load: {len(trials)} trials in 20 s by 8 processes ({per_worker}), states "
        f"{ {s.name: states.count(s) for s in set(states)} }, peak {peak} database connections"
    )
    assert states.count(TrialState.COMPLETE) == len(trials) > 100  # none failed, none left RUNNING
    assert len({t.number for t in trials}) == len(trials)  # no trial number handed out twice
    assert all(n > 0 for n in per_worker.values())  # every process got trials: no one starved or stuck
    assert peak <= 8 * 3, f"{peak} connections: more than 3 per worker process"
