"""A signed-in user's reads touch their own sessions' rows only, also in how PostgreSQL runs
them: under row-level security a query side left unbounded scans every user's rows and
filters them one by one (GET /sessions took 12 ms of database time at 60 users' equity marks,
growing with every user's history)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.ops.row_security import RowScope, acting_as, enforce_row_security
from tradeloop.ops.session_reads import SessionReads

SESSIONS, MARKS = 30, 400


def _plan_nodes(plan: dict) -> Iterator[dict]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.fixture
def store(pg_database: str) -> Iterator[OpsStore]:
    store = OpsStore.open(pg_database)
    yield store
    store.close()


def test_last_equity_reads_only_the_asked_sessions_marks_under_row_security(store: OpsStore) -> None:
    assert enforce_row_security(store.engine)
    ids = []
    for i in range(SESSIONS):
        row = store.create_session(
            name=f"s{i}", strategy="sma_cross", exchange="coinbase", timeframe="1m", symbols=["BTC-USD"],
            mode="paper", init_cash=1000.0, config={}, owner_id=None,
        )  # fmt: skip
        ids.append(row.id)
        with store.transaction() as db:
            db.execute(
                sa.insert(EquityPoint),
                [dict(session_id=row.id, ts=k * 60_000, equity=1000.0 + i + k, cash=1000.0) for k in range(MARKS)],
            )
    with store.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE equity"))
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if "FROM equity" in statement:
            statements.append((statement, parameters))

    sa.event.listen(store.engine, "before_cursor_execute", capture)
    mine = ids[7]
    with acting_as(RowScope(user_id=1, admin=True)):
        assert SessionReads(store).last_equity([mine]) == {mine: 1000.0 + 7 + MARKS - 1}
        sa.event.remove(store.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = statements
        with store.engine.begin() as conn:
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters).scalar()[0]["Plan"]
    read = [n for n in _plan_nodes(plan) if n.get("Relation Name") == "equity"]
    assert read and all(
        n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0) <= MARKS for n in read
    )
