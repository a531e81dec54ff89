"""The ccxt broker with the real ccxt library against the loopback Binance server (signed
REST, Binance's order and error formats)."""

from __future__ import annotations

import asyncio
import time

import pytest
from exchange_server import BinanceLoopback, Fault, rate_limited

from live.brokers.base import OrderRequest
from live.brokers.ccxt_broker import CcxtBroker, CcxtBrokerConfig
from tests.live.conftest import trained_world  # noqa: F401  (shared fixture)
from tradeloop.data.exchanges import make_exchange


def broker_on(server: BinanceLoopback, *, timeout_s: float = 2.0, visibility_window_s: float = 0.5) -> CcxtBroker:
    """The real ccxt client, keyed, on the loopback venue; windows small so tests stay fast."""
    exchange = make_exchange(
        "binance",
        timeout_s=timeout_s,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": server.secret},
        allow_insecure_loopback=True,
    )
    return CcxtBroker(
        exchange,
        config=CcxtBrokerConfig(recv_window_s=0.2, visibility_window_s=visibility_window_s, query_interval_s=0.1),
    )


@pytest.fixture
def server():
    with BinanceLoopback(candles={}, prices={"BTCUSDT": 20_000.0, "ETHUSDT": 1_500.0}) as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


def test_market_buy_by_cost_and_sell_by_amount_with_client_ids(server: BinanceLoopback) -> None:
    async def scenario():
        broker = broker_on(server)
        try:
            buy = await broker.submit(OrderRequest("tl1-1-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=1000.123456789))
            sell = await broker.submit(OrderRequest("tl1-2-BTCUSDT-ex", "BTC-USDT", "sell", quantity=0.0500004321))
            return buy, sell
        finally:
            await broker.close()

    buy, sell = run(scenario())
    assert buy.status == "filled" and len(buy.fills) == 1
    fill = buy.fills[0]
    assert (fill.symbol, fill.side, fill.price) == ("BTC-USDT", "buy", 20_000.0)
    sent = next(r for r in server.requests if r.startswith("POST /api/v3/order"))
    assert "quoteOrderQty=1000.12&" in sent  # cost truncated to the quote precision (2 decimals)
    assert fill.quantity == pytest.approx(0.05, rel=1e-12)  # the venue buys whole 0.00001 lots
    assert fill.fee == pytest.approx(0.05 * 20_000.0 * 0.001, rel=1e-9) and fill.trade_id == "10000"
    placed = server.orders["tl1-1-BTCUSDT-en"]
    assert placed["side"] == "BUY" and placed["clientOrderId"] == "tl1-1-BTCUSDT-en"
    assert server.orders["tl1-2-BTCUSDT-ex"]["origQty"] == "0.05000000"  # amount_to_precision (step 0.00001)
    assert sell.status == "filled" and sell.fills[0].quantity == pytest.approx(0.05)


def test_a_timed_out_create_is_queried_never_resent(server: BinanceLoopback) -> None:
    server.order_faults[1] = Fault(200, {}, delay_s=3.0)  # placed, but the answer comes after the timeout

    async def scenario():
        broker = broker_on(server, timeout_s=1.0)
        try:
            return await broker.submit(OrderRequest("tl1-3-ETHUSDT-en", "ETH-USDT", "buy", quote_amount=300.0))
        finally:
            await broker.close()

    state = run(scenario())
    creates = [r for r in server.requests if r.startswith("POST /api/v3/order")]
    assert len(creates) == 1  # one create, then a query: never a second create
    assert any(r.startswith("/api/v3/order?") and "origClientOrderId=tl1-3-ETHUSDT-en" in r for r in server.requests)
    assert state.status == "filled" and state.fills[0].quantity == pytest.approx(0.2)
    assert state.venue_order_id == str(server.orders["tl1-3-ETHUSDT-en"]["orderId"])


def test_a_create_that_never_arrived_is_reported_rejected_not_resent(server: BinanceLoopback) -> None:
    """A 503 before the order was taken: 'rejected' only after the query window, the venue's
    orders and its trades (one 'not found' is no proof)."""
    server.order_faults[1] = Fault(503, {"code": -1001, "msg": "Internal error; unable to process your request."})

    async def scenario():
        broker = broker_on(server)
        try:
            return await broker.submit(OrderRequest("tl1-4-ETHUSDT-en", "ETH-USDT", "buy", quote_amount=300.0))
        finally:
            await broker.close()

    state = run(scenario())
    assert sum(r.startswith("POST /api/v3/order") for r in server.requests) == 1
    assert state.status == "rejected" and "never received" in state.reason
    assert len(server.signed_reads("/api/v3/order")) >= 2  # CcxtBrokerConfig.min_queries
    assert len(server.signed_reads("/api/v3/allOrders")) == 1 and len(server.signed_reads("/api/v3/myTrades")) == 1
    assert "tl1-4-ETHUSDT-en" not in server.orders


def test_rate_limited_and_duplicate_creates_are_rejected(server: BinanceLoopback) -> None:
    server.order_faults[1] = rate_limited()

    async def scenario():
        broker = broker_on(server)
        try:
            limited = await broker.submit(OrderRequest("tl1-5-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0))
            first = await broker.submit(OrderRequest("tl1-6-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0))
            again = await broker.submit(OrderRequest("tl1-6-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0))
            return limited, first, again
        finally:
            await broker.close()

    limited, first, again = run(scenario())
    assert limited.status == "rejected" and "venue refused" in limited.reason
    assert first.status == "filled"
    assert again.status == "rejected" and "Duplicate order" in again.reason
    assert [o["clientOrderId"] for o in server.orders.values()] == ["tl1-6-BTCUSDT-en"]


def test_a_live_session_trades_through_ccxt_and_stores_each_fill_once(trained_world, server) -> None:
    """The engine in mode='live': orders go to the (loopback) venue; fills, cash and positions
    come from the venue's replies, and the periodic venue check finds the book in line with
    the venue's balances (a dedicated account holding the session's cash)."""
    from live.engine import EngineConfig
    from live.runner import SessionConfig, run_session
    from tests.live.conftest import make_settings

    settings = make_settings(
        trained_world.root,
        TRADELOOP_EXCHANGE_API_KEY=server.api_key,
        TRADELOOP_EXCHANGE_SECRET=server.secret,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
        DATABASE_URL=f"sqlite:///{trained_world.root / 'live-mode.db'}",
    )
    server.prices["BTCBUSD"] = 17_200.0
    config = SessionConfig(
        name="venue",
        exchange="binance",
        symbols=("BTC-BUSD",),
        timeframe="1m",
        mode="live",
        start=1670889600000 + 400 * 60_000,  # 400 bars of warm-up, 1040 live
        allow_in_sample=True,
    )  # 2022: inside the shared champion's training years
    server.balances.update({"BUSD": config.init_cash, "BNB": 3.0})  # BNB: not the session's, left alone
    engine = run(run_session(settings, config, engine_config=EngineConfig(venue_check_every_bars=100)))
    orders = engine.store.orders(engine.session.id)
    fills = engine.store.fills(engine.session.id)
    assert len(orders) >= 2 and {o.status for o in orders} == {"filled"}
    assert sorted(f.trade_id for f in fills) == sorted(str(o["orderId"] * 10) for o in server.orders.values())
    assert {o.client_order_id for o in orders} == set(server.orders)
    cash = config.init_cash + sum((-1 if f.side == "buy" else 1) * f.quantity * f.price - f.fee for f in fills)
    assert engine.cash == pytest.approx(cash, rel=1e-12)
    assert engine.store.session("venue").cash == pytest.approx(cash, rel=1e-12)
    audit = engine.store.audit_log(engine.session.id)
    assert [e.detail for e in audit if e.event == "venue_baseline"] == [{"BTC": 0.0, "BUSD": 0.0}]
    assert not [e for e in audit if e.event in ("balance_drift", "venue_check_failed", "symbol_halted")]
    assert len(server.signed_reads("/api/v3/account")) >= 5  # checked every 100 of 1040 bars (when settled)
    assert engine.store.session("venue").needs_ack is None


def test_recovery_after_a_crash_sends_only_an_order_whose_create_never_went_out(server: BinanceLoopback) -> None:
    """Three orders open in the database when the process died: the first was sent and the
    venue has it (the reply was lost), the second was committed but never sent, the third was
    sent and never arrived. Recovery resolves the first and third and sends only the second."""

    async def scenario():
        broker = broker_on(server)
        try:
            since = int(time.time() * 1000)
            await broker.submit(OrderRequest("tl1-7-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0))
            creates_before = sum(r.startswith("POST /api/v3/order") for r in server.requests)
            had = await broker.recover(
                OrderRequest("tl1-7-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0), sent=True, since_ms=since
            )
            unsent = await broker.recover(
                OrderRequest("tl1-8-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0), sent=False, since_ms=since
            )
            gone = await broker.recover(
                OrderRequest("tl1-9-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=100.0), sent=True, since_ms=since
            )
            return creates_before, had, unsent, gone
        finally:
            await broker.close()

    creates_before, had, unsent, gone = run(scenario())
    creates = [r for r in server.requests if r.startswith("POST /api/v3/order")]
    assert len(creates) == creates_before + 1 and "tl1-8-BTCUSDT-en" in creates[-1]
    assert had.status == "filled" and unsent.status == "filled"
    assert gone.status == "rejected" and "tl1-9-BTCUSDT-en" not in server.orders  # sent once: never again
