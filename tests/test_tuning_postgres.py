"""Scale-out on a real database: a PostgreSQL server started for the test, two workers on one study.

The server is Debian's `postgresql` package (`make test` installs it when missing). PostgreSQL
refuses to run as root, so under root the server runs as the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.test_tuning import WORKER, start_worker


def server_binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb") or ""]
    if not found[-1]:
        pytest.fail("PostgreSQL's server programs (initdb, pg_ctl) are not installed; `make test` installs "
                    "them with apt-get (Debian's postgresql package)")
    return Path(found[-1]).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    bindir = server_binaries()
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="minbert-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    port, data = free_port(), folder / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True, cwd=folder)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
    run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"), "-w", "start",
        "-o", f"-p {port} -k {folder} -c listen_addresses=127.0.0.1")
    try:
        admin = sqlalchemy.create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
                                         isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text("CREATE DATABASE optuna_test"))
        admin.dispose()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/optuna_test"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_two_workers_share_one_study_on_postgresql(postgres_url, tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    with sqlalchemy.create_engine(postgres_url).connect() as connection:  # a real server answers
        assert connection.execute(sqlalchemy.text("SELECT version()")).scalar().startswith("PostgreSQL")
    workers = [start_worker(script, postgres_url, "none", 10, 0.05) for _ in range(2)]
    for proc in workers:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    trials = optuna.load_study(study_name="shared", storage=postgres_url).get_trials()
    assert [t.number for t in trials] == list(range(len(trials)))  # each trial recorded once
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 10
    assert len({t.params["x"] for t in finished}) == 10  # distinct parameters
    assert len({t.user_attrs["pid"] for t in finished}) == 2  # both workers trained trials
    assert all(t.state != TrialState.RUNNING for t in trials)
