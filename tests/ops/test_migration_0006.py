"""Migration 0006 (a protective leg's state: ``orders.entry_atr``, ``armed_ts``, ``extreme``) on
SQLite and on the real PostgreSQL server: an older database's orders read the new columns as
unknown (NULL), take values (an armed bar in epoch milliseconds, past 32 bits), and the
downgrade drops them and keeps the rows."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.ops.test_audit import own_pg_url  # noqa: F401  (a database of this test's own)
from tests.ops.test_in_sample import HEAD, _downgrade, _version, url  # noqa: F401
from tradeloop.ops import OpsStore, Order, connect, migrate

NEW_COLUMNS = {"entry_atr", "armed_ts", "extreme"}
ARMED_TS = 1_670_922_840_000  # 2022-12-13 09:14 UTC: does not fit 32 bits


def _database_at_0005(engine: sa.Engine) -> None:
    """A session with an entry and its trailing leg, written by 0005's schema."""
    migrate(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO sessions (name, strategy, exchange, timeframe, symbols, mode, status, init_cash, cash, "
                "config, halted, in_sample, created_at, updated_at) VALUES ('old', 'sma_cross', 'binance', '1m', "
                "'[\"BTC-BUSD\"]', 'live', 'running', 1000, 1000, '{}', '{}', false, CURRENT_TIMESTAMP, "
                "CURRENT_TIMESTAMP)"
            )
        )
        sid = conn.execute(sa.text("SELECT id FROM sessions WHERE name = 'old'")).scalar_one()
        insert = sa.text(
            "INSERT INTO orders (session_id, client_order_id, venue, symbol, side, intent, decided_ts, status, "
            "filled_qty, avg_price, fee, order_type, time_in_force, trigger_price, reduce_only, parent_id, "
            "created_at, updated_at) VALUES (:sid, :coid, 'binance', 'BTC-BUSD', :side, :intent, :ts, :status, "
            ":filled, :avg, 0, :type, 'gtc', :trigger, :reduce, :parent, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        )
        common = {"sid": sid, "ts": ARMED_TS}
        entry = {"coid": "e", "side": "buy", "intent": "enter_long", "status": "filled", "filled": 0.5}
        conn.execute(insert, common | entry | {"avg": 17_100.0, "type": "market", "trigger": None, "reduce": False,
                                               "parent": None})  # fmt: skip
        parent = conn.execute(sa.text("SELECT id FROM orders WHERE client_order_id = 'e'")).scalar_one()
        leg = {"coid": "e-ts", "side": "sell", "intent": "trailing_stop", "status": "acknowledged", "filled": 0.0}
        conn.execute(insert, common | leg | {"avg": None, "type": "stop", "trigger": 17_080.5, "reduce": True,
                                             "parent": parent})  # fmt: skip


def _columns(engine: sa.Engine) -> dict[str, dict]:
    return {c["name"]: c for c in sa.inspect(engine).get_columns("orders")}


def test_orders_of_an_older_database_gain_the_protection_state_and_lose_it_on_downgrade(url: str) -> None:
    engine = connect(url)
    _database_at_0005(engine)
    assert not NEW_COLUMNS & set(_columns(engine))
    migrate(engine)
    assert _version(engine) == HEAD
    columns = _columns(engine)
    assert all(columns[name]["nullable"] for name in NEW_COLUMNS)
    store = OpsStore(engine)
    session = store.session("old")
    legs = {o.client_order_id: o for o in store.orders(session.id)}
    assert [(o.entry_atr, o.armed_ts, o.extreme) for o in legs.values()] == [(None, None, None)] * 2
    assert legs["e-ts"].trigger_price == pytest.approx(17_080.5) and legs["e-ts"].parent_id == legs["e"].id
    with store.transaction() as db:
        leg = db.get(Order, legs["e-ts"].id)
        assert leg is not None
        leg.entry_atr, leg.armed_ts, leg.extreme = 5.25, ARMED_TS, 17_225.23
    [leg] = [o for o in store.orders(session.id) if o.client_order_id == "e-ts"]
    assert (leg.entry_atr, leg.armed_ts, leg.extreme) == (pytest.approx(5.25), ARMED_TS, pytest.approx(17_225.23))

    _downgrade(engine, "0005")
    assert _version(engine) == "0005"
    assert not NEW_COLUMNS & set(_columns(engine))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT client_order_id, trigger_price, parent_id FROM orders")).all()
    assert {cid: (trigger, parent is not None) for cid, trigger, parent in rows} == {
        "e": (None, False),
        "e-ts": (pytest.approx(17_080.5), True),
    }
    migrate(engine)  # and up again: the values are gone, the columns back
    with engine.connect() as conn:
        again = conn.execute(sa.text("SELECT entry_atr, armed_ts, extreme FROM orders")).all()
    assert [tuple(r) for r in again] == [(None, None, None)] * 2
