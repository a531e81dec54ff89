"""Migration 0005 (the trading vocabulary) on SQLite and on the real PostgreSQL server: an
older database's orders take the lifecycle statuses, its positions are keyed by instrument
(venue = the session's exchange), sessions gain risk columns, and the downgrade restores it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.ops.test_audit import own_pg_url  # noqa: F401  (a database of this test's own)
from tests.ops.test_in_sample import HEAD, _downgrade, _version, url  # noqa: F401
from tradeloop.ops import OpsStore, Position, connect, migrate
from tradeloop.trading import InstrumentId, OrderStatus


def _older_database(engine: sa.Engine) -> None:
    migrate(engine, "0004")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sessions (name, strategy, exchange, timeframe, symbols, mode, status, init_cash, cash, "
                "config, halted, in_sample, created_at, updated_at) VALUES ('old', 'sma_cross', 'coinbase', '4h', "
                "'[\"BTC-USD\"]', 'paper', 'running', 1000, 500, '{}', '{}', false, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        sid = conn.execute(sa.text("SELECT id FROM sessions WHERE name = 'old'")).scalar_one()
        for coid, status, sent in (("a", "submitted", 1), ("b", "new", 2), ("c", "new", None), ("d", "filled", 3)):
            conn.execute(
                sa.text(
                    "INSERT INTO orders (session_id, client_order_id, venue, symbol, side, intent, decided_ts, "
                    "sent_at_ms, status, filled_qty, fee, created_at, updated_at) VALUES (:sid, :coid, 'paper', "
                    "'BTC-USD', 'buy', 'enter_long', 0, :sent, :status, 0, 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"sid": sid, "coid": coid, "status": status, "sent": sent},
            )
        conn.execute(
            sa.text(
                "INSERT INTO positions (session_id, symbol, quantity, entry_price, entry_fee, realized_pnl) "
                "VALUES (:sid, 'BTC-USD', 0.5, 1000, 0.5, 0)"
            ),
            {"sid": sid},
        )


def test_an_older_database_takes_the_vocabulary_and_gives_it_back_on_downgrade(url: str) -> None:
    engine = connect(url)
    _older_database(engine)
    migrate(engine)
    assert _version(engine) == HEAD
    store = OpsStore(engine)
    session = store.session("old")
    statuses = {o.client_order_id: o.status for o in store.orders(session.id)}
    assert statuses == {
        "a": OrderStatus.ACKNOWLEDGED,
        "b": OrderStatus.SENT,  # its create was recorded as sent
        "c": OrderStatus.NEW,
        "d": OrderStatus.FILLED,
    }
    orders = {o.client_order_id: o for o in store.orders(session.id)}
    assert orders["a"].order_type == "market" and orders["a"].time_in_force == "gtc"
    assert orders["a"].reduce_only is False and orders["a"].price is None
    with store.transaction() as db:
        position = db.get(Position, (session.id, "coinbase", "BTC-USD"))
        assert position is not None and position.quantity == pytest.approx(0.5)
        assert position.instrument == InstrumentId("coinbase", "BTC-USD")
        # the same symbol on another venue is another position (the key holds the venue)
        db.add(
            Position(
                session_id=session.id,
                venue="binance",
                symbol="BTC-USD",
                quantity=1.0,
                entry_price=1.0,
                entry_fee=0.0,
                realized_pnl=0.0,
            )
        )
    assert session.risk_config is None and session.risk_state is None
    with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:  # the venue is part of the key: NOT NULL
        conn.execute(sa.text("UPDATE positions SET venue = NULL"))

    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM positions WHERE venue = 'binance'"))
        # statuses and intents 0004 never knew, mapped to its nearest before its columns narrow
        conn.execute(sa.text("UPDATE orders SET status = 'cancel_requested', intent = 'trailing_stop' WHERE "
                             "client_order_id = 'a'"))  # fmt: skip
    _downgrade(engine, "0004")
    assert _version(engine) == "0004"
    with engine.connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT client_order_id, status FROM orders")).all())
        assert rows == {"a": "submitted", "b": "new", "c": "new", "d": "filled"}
        intents = dict(conn.execute(sa.text("SELECT client_order_id, intent FROM orders")).all())
        assert intents["a"] == "enter_long"  # a buy
        assert "venue" not in {c["name"] for c in sa.inspect(engine).get_columns("positions")}
        assert conn.execute(sa.text("SELECT quantity FROM positions")).scalar_one() == pytest.approx(0.5)
