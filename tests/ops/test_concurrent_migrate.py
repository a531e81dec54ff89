"""Several processes open a fresh operational database at once (`tradeloop up` starts the
live engine, the dashboard and the API together): each migration waits for the others
(SQLite's write lock, PostgreSQL's advisory lock) instead of failing with "database is
locked" or a table created twice."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import PG_ADMIN_URL
from tradeloop.ops import OpsStore, connect
from tradeloop.ops.database import migrate, schema_behind


def test_a_migration_waits_for_a_writer_that_commits_while_it_runs(tmp_path: Path) -> None:
    # a deferred transaction reads the version table, then finds the file changed under its
    # snapshot when it comes to write: SQLITE_BUSY at once, whatever the busy timeout
    path = tmp_path / "ops.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE elsewhere (x INTEGER)")

    def commit_later() -> None:
        time.sleep(1.0)
        other.execute("COMMIT")

    writer = threading.Thread(target=commit_later)
    writer.start()
    engine = connect(f"sqlite:///{path}")
    try:
        migrate(engine)
        assert schema_behind(engine) is None
    finally:
        writer.join()
        other.close()
        engine.dispose()


@pytest.fixture
def fresh_pg() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"tradeloop_migrate_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_three_processes_migrate_one_fresh_database_at_once(
    database: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path / 'ops.db'}" if database == "sqlite" else request.getfixturevalue("fresh_pg")
    script = "import sys; from tradeloop.ops import OpsStore; OpsStore.open(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", script, url], stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = OpsStore.open(url)
    assert store.sessions() == []
    store.close()
