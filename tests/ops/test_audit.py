"""The audit log names who did what, and nobody rewrites it: UPDATE, DELETE (and TRUNCATE on
PostgreSQL) are refused by the database itself, on SQLite and on the real PostgreSQL server."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import throwaway_database
from tradeloop.ops import OpsStore


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A database of this test's own on the real PostgreSQL server: its audit log starts empty
    (and cannot be emptied afterwards: the whole database is dropped)."""
    with throwaway_database("tradeloop_audit") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return request.getfixturevalue("own_pg_url")


def _session(store: OpsStore):
    return store.create_session(
        name="audited",
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={},
    )


def test_cli_actions_are_audited_with_the_os_user_and_host(url: str, tmp_path: Path) -> None:
    store = OpsStore.open(url)
    _session(store)
    env = os.environ | {"DATABASE_URL": url, "TRADELOOP_DATA_DIR": str(tmp_path)}
    env.pop("TRADELOOP_ACTOR", None)
    done = subprocess.run(
        [sys.executable, "-m", "tradeloop", "live", "pause", "audited"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rows = store.audit_log()
    assert [r.event for r in rows] == ["session_started", "session_paused"]
    assert rows[-1].actor == f"{getpass.getuser()}@{socket.gethostname()}"
    store.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET event = 'nothing happened'",
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
    ],
)
def test_audit_rows_cannot_be_rewritten_or_deleted(url: str, statement: str) -> None:
    store = OpsStore.open(url)
    _session(store)
    before = [(r.id, r.event, r.actor) for r in store.audit_log()]
    with pytest.raises(sa.exc.DatabaseError, match="append-only"):
        with store.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [(r.id, r.event, r.actor) for r in store.audit_log()] == before
    with store.transaction() as db:  # appending still works
        OpsStore.audit(db, "note", detail={"why": "test"})
    assert len(store.audit_log()) == len(before) + 1
    store.close()


def test_truncate_is_refused_on_postgresql(own_pg_url: str) -> None:
    store = OpsStore.open(own_pg_url)
    try:
        _session(store)
        with pytest.raises(sa.exc.DatabaseError, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE audit_log CASCADE"))
        assert len(store.audit_log()) == 1
    finally:
        store.close()
