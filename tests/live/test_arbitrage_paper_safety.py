"""Paper arbitrage's safety rules (``live.arbitrage_paper``), in the real operational database
(SQLite, PostgreSQL): the buy leg goes first and the sell follows only for what it filled; an
unhedged leg is reported, never a NaN; one process per session; orders in flight are reserved;
a resumed session keeps its settings; a paused or stopped session is said so; the session's
cash and equity follow the fills; the balances are rebuilt from the fills after a restart."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from live.arbitrage_paper import EXECUTED, PAUSED, PaperExecutor, leg_id
from live.arbitrage_session import held_now
from live.brokers.base import OrderRequest, OrderState
from live.brokers.quote_paper import QuotePaperBroker
from live.orders import mark_sent, new_order
from tests.live.test_arbitrage_paper import CLOSE, FEES, FUNDED, OPEN, run, service_of, store  # noqa: F401
from tradeloop.arbitrage import MarketLimits, PaperExecutionConfig
from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops import EquityPoint, OpsStore
from tradeloop.ops.market_store import MarketStore
from tradeloop.ops.session_reads import Page
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, TimeInForce

PNL = (101 * 0.5 - 101 * 0.5 * 0.002) - (100 * 0.5 + 100 * 0.5 * 0.001)  # OPEN's pair: the spread less both fees


class Book(QuotePaperBroker):
    """The quote paper book, noting every create; ``buy_shows`` cuts the ask size a buy meets,
    ``refuse`` rejects a side."""

    def __init__(self, *, buy_shows: float | None = None, refuse: str | None = None):
        super().__init__(taker_fees=FEES)
        self.sent: list[tuple[str, float | None]] = []
        self.buy_shows, self.refuse = buy_shows, refuse

    async def submit(self, order: OrderRequest) -> OrderState:
        self.sent.append((order.side, order.quantity))
        if order.side == self.refuse:
            return OrderState(order.client_order_id, "rejected", reason="refused by the test")
        if order.side == "buy" and self.buy_shows is not None:
            self.tops[order.symbol] = replace(self.tops[order.symbol], ask_size=self.buy_shows)
        return await super().submit(order)


def test_a_buy_that_fills_nothing_sends_no_sell(store: OpsStore) -> None:
    book = Book(refuse="buy")
    service = service_of(store, broker=book)
    assert run(service, OPEN) == []
    assert book.sent == [("buy", 0.5)]  # the sell never went out
    sid = service.executor.session_id
    (row,) = MarketStore(store).opportunities(Page())
    statuses = {o.client_order_id: o.status for o in store.orders(sid)}
    assert statuses == {leg_id(sid, row.id, OrderSide.BUY): "rejected", leg_id(sid, row.id, OrderSide.SELL): "canceled"}
    (why,) = store.audit_log(sid, events=("arbitrage_leg_skipped",))
    assert "not sent" in why.detail["reason"] and "filled 0" in why.detail["reason"]
    assert store.fills(sid) == [] and service.executor.balances() == FUNDED


def test_a_buy_filled_in_part_sends_the_sell_for_that_part(store: OpsStore) -> None:
    book = Book(buy_shows=0.2)
    service = service_of(store, broker=book)
    (done,) = run(service, OPEN)
    assert book.sent == [("buy", 0.5), ("sell", 0.2)]
    assert done["bought"] == done["sold"] == done["matched"] == 0.2 and done["unhedged"] == 0.0
    assert done["realised_net_profit"] == pytest.approx(PNL * 0.2 / 0.5)
    assert len(store.audit_log(service.executor.session_id, events=("arbitrage_leg_resized",))) == 1


def test_a_sell_that_fills_nothing_leaves_the_buy_unhedged_and_the_result_is_stored(store: OpsStore) -> None:
    service = service_of(store, broker=Book(refuse="sell"))
    (done,) = run(service, OPEN)  # on PostgreSQL a NaN in the audit row's JSON would roll it back
    assert done["bought"] == 0.5 and done["sold"] == 0.0 and done["unhedged"] == 0.5
    assert done["realised_net_profit"] == 0.0 and done["realised_net_bps"] is None
    (row,) = store.audit_log(service.executor.session_id, events=(EXECUTED,))
    assert row.detail["realised_net_bps"] is None and row.detail["unhedged"] == 0.5


def test_two_processes_on_one_session_are_refused_and_the_second_clears_nothing(store: OpsStore) -> None:
    first = service_of(store).executor
    second = service_of(store).executor

    async def go() -> None:
        await first.start()
        with pytest.raises(SessionStateError, match="arbitrage-paper"):
            await second.start()
        await second.close()  # the refused one's close must not clear the holder's heartbeat
        assert store.session("arbitrage-paper").heartbeat_at is not None
        await first.close()
        assert store.session("arbitrage-paper").heartbeat_at is None
        await second.start()  # free again
        await second.close()

    asyncio.run(go())


def test_orders_in_flight_are_reserved_from_the_balances(store: OpsStore) -> None:
    service = service_of(store)
    executor = service.executor
    sid = asyncio.run(executor.start())
    intent = OrderIntent(
        instrument=InstrumentId("b", "BTC-USDT"), side=OrderSide.SELL, quantity=0.9, reference_price=101.0,
        kind=OrderIntentKind.EXIT_LONG, time_in_force=TimeInForce.IOC,
    )  # fmt: skip
    with store.transaction() as db:  # a sell of 0.9 of b's 1 BTC still out
        order = new_order(db, session_id=sid, venue="paper", ts=0, intent=intent, symbol="b:BTC-USDT",
                          client_id="tl-inflight")  # fmt: skip
        db.flush()
        mark_sent(db, [order], now_ms=1, with_legs=False)
    (done,) = run(service, OPEN)
    assert done["sold"] == pytest.approx(0.1) and done["limited_by"] == "BTC held on b"


def test_a_resumed_session_with_other_settings_is_refused_naming_the_fix(store: OpsStore) -> None:
    run(service_of(store), OPEN)
    for options, said in [
        ({"max_notional": 500.0}, "--max-notional was 1000.0, now 500.0"),
        ({"min_notional": 1.0}, "--min-notional was 0.0, now 1.0"),
        ({"fees": {"a": 0.001, "b": 0.001}}, "--taker-fee was"),
        ({"inventory": {**FUNDED, "a": {"USDT": 1.0, "BTC": 1.0}}}, "--inventory was"),
    ]:
        with pytest.raises(ConfigError, match="new --paper-session name") as err:
            run(service_of(store, **options), OPEN)
        assert said in str(err.value)
    other = PaperExecutor(PaperExecutionConfig(max_notional=1_000.0, inventory=FUNDED), store=store,
                          broker=QuotePaperBroker(taker_fees=FEES), symbols=["ETH/USDT"])  # fmt: skip
    with pytest.raises(ConfigError, match="--symbol/--venue was"):
        asyncio.run(other.start())


def test_a_session_paused_at_the_start_is_said_and_a_stopped_one_ends_the_service(
    store: OpsStore, caplog: pytest.LogCaptureFixture
) -> None:
    run(service_of(store), [])  # made
    store.set_status("arbitrage-paper", "paused")
    with caplog.at_level(logging.WARNING, logger="live.arbitrage_paper"):
        assert run(service_of(store), OPEN) == []
    assert any("is paused at the start" in r.getMessage() for r in caplog.records)
    sid = store.session("arbitrage-paper").id
    (paused,) = store.audit_log(sid, events=(PAUSED,))
    assert paused.detail == {"status": "paused", "at": "start"}
    store.set_status("arbitrage-paper", "running")
    service = service_of(store)
    asyncio.run(service.executor.start())
    store.set_status("arbitrage-paper", "stopped")  # `tradeloop live stop` while it runs
    with pytest.raises(SessionStateError, match="is stopped: paper execution ends"):
        run(service, [replace(q, ts=q.ts + 9_000) for q in OPEN])
    assert store.orders(sid) == []
    with pytest.raises(SessionStateError, match="stopped"):
        run(service_of(store), OPEN)  # final


def test_the_session_cash_and_equity_follow_the_fills_and_a_restart_rebuilds_the_balances(store: OpsStore) -> None:
    first = service_of(store)
    run(first, [*OPEN, CLOSE, *[replace(q, ts=q.ts + 1_000) for q in OPEN]])  # two pairs
    session = store.session("arbitrage-paper")
    held = first.executor.balances()
    assert session.init_cash == 20_000.0
    assert session.cash == pytest.approx(held["a"]["USDT"] + held["b"]["USDT"])
    assert session.cash == pytest.approx(20_000.0 + 2 * PNL)  # hedged pairs: the quote moved by the PnL only
    equity = store.frame(EquityPoint, session.id).sort("ts")["equity"].to_list()
    assert equity == pytest.approx([20_000.0 + PNL, 20_000.0 + 2 * PNL])
    with store.transaction() as db:  # one aggregate query gives what the running balances kept
        rebuilt = held_now(db, session.id, FUNDED)
    assert {v: pytest.approx(a) for v, a in rebuilt.items()} == held
    restarted = service_of(store)
    run(restarted, [])
    assert restarted.executor.balances() == {v: pytest.approx(a) for v, a in held.items()}


def test_a_restart_closes_the_rows_it_left_open_and_a_spread_still_open_is_a_new_opportunity(store: OpsStore) -> None:
    run(service_of(store), OPEN)  # opened and traded; the process ends with it open
    (old,) = MarketStore(store).opportunities(Page())
    assert old.end_ms is None
    published = run(service_of(store), [replace(q, ts=q.ts + 60_000) for q in OPEN])  # still open after the restart
    first, second = MarketStore(store).opportunities(Page())
    assert (
        first.id == old.id and first.end_ms is not None and first.end_ms >= first.start_ms
    )  # closed, not open forever
    assert second.end_ms is None and [e["id"] for e in published] == [second.id]  # a new opportunity, traded once
    assert [r.id for r in MarketStore(store).opportunities(Page(), open_only=True)] == [second.id]


def test_a_ccxt_markets_precision_becomes_the_amount_step() -> None:
    from live.arbitrage import market_limits

    market = {"precision": {"amount": 1e-05}, "limits": {"amount": {"min": 1e-05}, "cost": {"min": 5.0}}}
    assert market_limits(market, precision_mode=4) == MarketLimits(amount_step=1e-05, min_amount=1e-05, min_cost=5.0)
    assert market_limits({"precision": {"amount": 3}}, precision_mode=2).amount_step == pytest.approx(1e-3)
    assert market_limits({}, precision_mode=4) == MarketLimits()  # nothing known: DEFAULT_STEP, no minimum
