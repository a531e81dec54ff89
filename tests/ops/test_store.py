"""The operational database on SQLite (embedded default) and on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.ops.test_in_sample import HEAD
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import Fill, OpsStore, Order, connect, migrate
from tradeloop.ops.models import Base


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path: Path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ops.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    store = OpsStore.open(url)
    yield store
    # the PostgreSQL database is shared by the test session: drop the schema (the audit log
    # refuses DELETE and TRUNCATE, so emptying it row by row is not an option)
    with store.engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS tradeloop_alembic_version"))
    store.close()


def new_session(store: OpsStore, name: str = "s1"):
    return store.create_session(
        name=name,
        strategy="sma_cross",
        exchange="coinbase",
        timeframe="4h",
        symbols=["BTC-USD"],
        mode="paper",
        init_cash=1000.0,
        config={"fee_rate": 0.001},
    )


def test_migrations_are_idempotent_and_reach_head(store: OpsStore) -> None:
    migrate(store.engine)  # second run: nothing to do
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM tradeloop_alembic_version")).scalar() == HEAD
    assert set(sa.inspect(store.engine).get_table_names()) >= {
        "sessions",
        "orders",
        "fills",
        "positions",
        "thresholds",
        "equity",
        "audit_log",
    }


def test_session_lifecycle_and_bad_transitions(store: OpsStore) -> None:
    new_session(store)
    with pytest.raises(SessionStateError, match="already exists"):
        new_session(store)
    assert store.set_status("s1", "paused").status == "paused"
    assert store.set_status("s1", "running").status == "running"
    assert store.set_status("s1", "stopped").status == "stopped"
    with pytest.raises(SessionStateError, match="stopped; it cannot become running"):
        store.set_status("s1", "running")
    with pytest.raises(SessionStateError, match="no trading session named 'nope'"):
        store.session("nope")
    events = [e.event for e in store.audit_log(store.session("s1").id)]
    assert events == ["session_started", "session_paused", "session_running", "session_stopped"]


def test_a_finished_replay_resumes_and_a_stopped_session_never_finishes(store: OpsStore) -> None:
    session = new_session(store)
    store.beat(session.id)
    assert store.session("s1").heartbeat_at is not None
    assert store.finish(session.id) is True
    finished = store.session("s1")
    assert (finished.status, finished.heartbeat_at) == ("finished", None)
    assert store.finish(session.id) is False  # finished already: nothing written
    assert store.set_status("s1", "running").status == "running"  # `live run` picks up new candles
    store.set_status("s1", "stopped")
    assert store.finish(session.id) is False and store.session("s1").status == "stopped"
    with pytest.raises(SessionStateError, match="stopped; it cannot become finished"):
        store.set_status("s1", "finished")
    events = [e.event for e in store.audit_log(session.id)]
    assert events == ["session_started", "session_finished", "session_running", "session_stopped"]


def test_a_fill_is_stored_exactly_once(store: OpsStore) -> None:
    session = new_session(store)
    with store.transaction() as db:
        order = Order(
            session_id=session.id,
            client_order_id="tl1-1-BTCUSD-en",
            venue="binance",
            symbol="BTC-USD",
            side="buy",
            intent="enter_long",
            quote_amount=100.0,
            decided_ts=1,
            status="acknowledged",
        )
        db.add(order)
        db.flush()
        fill = dict(
            order_id=order.id,
            session_id=session.id,
            venue="binance",
            symbol="BTC-USD",
            trade_id="T1",
            side="buy",
            quantity=0.01,
            price=10_000.0,
            fee=0.1,
            ts=2,
        )
        assert OpsStore.add_fill(db, Fill(**fill)) is True
        assert OpsStore.add_fill(db, Fill(**fill)) is False  # same venue, symbol, trade id
        assert OpsStore.add_fill(db, Fill(**(fill | {"trade_id": "T2"}))) is True
    assert [f.trade_id for f in store.fills(session.id)] == ["T1", "T2"]
    with pytest.raises(sa.exc.IntegrityError), store.transaction() as db:  # a second order, same client id
        db.add(
            Order(
                session_id=session.id,
                client_order_id="tl1-1-BTCUSD-en",
                venue="binance",
                symbol="BTC-USD",
                side="buy",
                intent="enter_long",
                decided_ts=1,
                status="new",
            )
        )
    assert len(store.orders(session.id)) == 1


def test_bad_database_urls_name_the_setting() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL='nonsense' is not a SQLAlchemy URL"):
        connect("nonsense")
    with pytest.raises(ConfigError, match="backend 'mysql' is not supported"):
        connect("mysql://u@127.0.0.1/x")
    with pytest.raises(ConfigError, match="cannot reach the operational database"):
        OpsStore.open("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_nested_write_commits_only_with_its_transaction(store: OpsStore) -> None:
    """A fill added first in a bar (inside a SAVEPOINT) must vanish when the bar's transaction
    does not commit: on SQLite, pysqlite's own transaction handling used to commit it alone."""
    session = new_session(store)
    with store.transaction() as db:
        order = Order(
            session_id=session.id,
            client_order_id="tl1-2-BTCUSD-en",
            venue="paper",
            symbol="BTC-USD",
            side="buy",
            intent="enter_long",
            quote_amount=100.0,
            decided_ts=1,
            status="acknowledged",
        )
        db.add(order)
    with pytest.raises(RuntimeError), store.transaction() as db:
        assert OpsStore.add_fill(
            db,
            Fill(
                order_id=order.id,
                session_id=session.id,
                venue="paper",
                symbol="BTC-USD",
                trade_id="P1",
                side="buy",
                quantity=1.0,
                price=1.0,
                fee=0.0,
                ts=2,
            ),
        )
        raise RuntimeError("the process dies before the bar commits")
    assert store.fills(session.id) == []


def test_a_paused_session_stays_paused_when_its_data_ends(store: OpsStore) -> None:
    """An operator's pause outlives the replay: it never becomes ``finished`` (which the next
    ``live run`` would turn into ``running``), only ``live resume`` lifts it."""
    session = new_session(store)
    store.set_status("s1", "paused")
    assert store.finish(session.id) is False and store.session("s1").status == "paused"
    with pytest.raises(SessionStateError, match="paused; it cannot become finished"):
        store.set_status("s1", "finished")


def test_a_stopped_session_cannot_be_acknowledged(store: OpsStore) -> None:
    session = new_session(store)
    with store.transaction() as db:
        OpsStore.require_ack(db, session.id, "balance drift: test", event="balance_drift", detail={})
        OpsStore.halt_symbol(db, session.id, "BTC-USD", "unknown order", order_id=None)
    store.set_status("s1", "stopped")
    for symbol in (None, "BTC-USD"):
        with pytest.raises(SessionStateError, match="is stopped \\(final\\): there is nothing to acknowledge"):
            store.acknowledge("s1", symbol=symbol)
    assert [e.event for e in store.audit_log(session.id)][-1] == "session_stopped"
