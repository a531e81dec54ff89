"""Migrations 0003 (``sessions.in_sample``: boolean, not null, default false) and 0004
(``thresholds.bar_ts``), on SQLite and on the real PostgreSQL server; an in-sample session is
created with an audit row saying so."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from tests.ops.test_audit import own_pg_url  # noqa: F401  (a database of this test's own)
from tradeloop.ops import OpsStore, connect, migrate
from tradeloop.ops.database import MIGRATIONS

HEAD = "0015"  # the newest migration: bump when one is added


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ops.db'}"
    return request.getfixturevalue("own_pg_url")


def _downgrade(engine: sa.Engine, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def _version(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT version_num FROM tradeloop_alembic_version")).scalar_one()


def test_sessions_of_an_older_database_read_as_out_of_sample_after_the_upgrade(url: str) -> None:
    engine = connect(url)
    migrate(engine, "0002")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sessions (name, strategy, exchange, timeframe, symbols, mode, status, init_cash, cash, "
                "config, created_at, updated_at) VALUES ('old', 'sma_cross', 'coinbase', '4h', '[\"BTC-USD\"]', "
                "'paper', 'running', 1000, 1000, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        )
    migrate(engine)
    assert _version(engine) == HEAD
    column = {c["name"]: c for c in sa.inspect(engine).get_columns("sessions")}["in_sample"]
    assert column["nullable"] is False
    store = OpsStore(engine)
    assert store.session("old").in_sample is False
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # NOT NULL holds in the database
        conn.execute(sa.text("UPDATE sessions SET in_sample = NULL WHERE name = 'old'"))
    _downgrade(engine, "0002")
    assert _version(engine) == "0002"
    assert "in_sample" not in {c["name"] for c in sa.inspect(engine).get_columns("sessions")}
    migrate(engine)
    assert store.session("old").in_sample is False
    engine.dispose()


def test_an_in_sample_session_is_marked_and_audited_and_the_default_is_out_of_sample(url: str) -> None:
    store = OpsStore.open(url)
    common = {
        "strategy": "sma_cross",
        "exchange": "coinbase",
        "timeframe": "4h",
        "symbols": ["BTC-USD"],
        "mode": "paper",
        "init_cash": 1000.0,
        "config": {},
    }
    plain = store.create_session(name="plain", **common)
    marked = store.create_session(
        name="marked", in_sample=True, in_sample_detail={"first_bar_ms": 1, "trained_until_ms": 2}, **common
    )
    assert (plain.in_sample, marked.in_sample) == (False, True)
    assert (store.session("plain").in_sample, store.session("marked").in_sample) == (False, True)
    assert [e.event for e in store.audit_log(plain.id)] == ["session_started"]
    rows = store.audit_log(marked.id)
    assert [e.event for e in rows] == ["session_started", "session_in_sample"]
    assert rows[1].detail == {"first_bar_ms": 1, "trained_until_ms": 2}
    assert store.set_status("marked", "paused").in_sample is True  # a status change keeps the flag
    store.close()


def test_migration_0004_adds_the_bar_a_threshold_decided_from_and_keeps_older_rows(url: str) -> None:
    engine = connect(url)
    migrate(engine, "0003")
    store = OpsStore(engine)
    with engine.begin() as conn:  # SQL, not the store: the models describe the newest schema
        conn.execute(
            sa.text(
                "INSERT INTO sessions (name, strategy, exchange, timeframe, symbols, mode, status, init_cash, cash, "
                "config, halted, in_sample, created_at, updated_at) VALUES ('old', 'sma_cross', 'coinbase', '4h', "
                "'[\"BTC-USD\"]', 'paper', 'running', 1000, 1000, '{}', '{}', false, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        sid = conn.execute(sa.text("SELECT id FROM sessions WHERE name = 'old'")).scalar_one()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO thresholds (session_id, source, artifact, threshold, reason, since) "
                "VALUES (:sid, 'model', NULL, 0.5, 'before 0004', CURRENT_TIMESTAMP)"
            ),
            {"sid": sid},
        )
    migrate(engine)
    [old] = store.thresholds(sid)
    assert old.reason == "before 0004" and old.bar_ts is None  # unknown, not invented
    column = {c["name"]: c for c in sa.inspect(engine).get_columns("thresholds")}["bar_ts"]
    assert column["nullable"] is True
    _downgrade(engine, "0003")
    assert "bar_ts" not in {c["name"] for c in sa.inspect(engine).get_columns("thresholds")}
    migrate(engine)
    assert [t.reason for t in store.thresholds(sid)] == ["before 0004"]
    engine.dispose()
