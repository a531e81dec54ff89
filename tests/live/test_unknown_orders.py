"""Orders whose outcome is unknown, against the real ccxt client and the loopback venue in its
realistic modes (client ids unique only among open orders, orders shown late, replies lost):
found and never re-sent, rejected only on proof, and a symbol halted when nothing can be proven."""

from __future__ import annotations

import asyncio

import pytest
from exchange_server import BinanceLoopback, Fault

from live.brokers.base import OrderRequest
from live.orders import mark_sent
from live.reconcile import wall_ms
from tests.live.conftest import World, trained_world, world  # noqa: F401  (shared fixtures)
from tests.live.venue_session import SYMBOL, broker_on, run_bars, tradeloop, venue_engine, venue_settings
from tradeloop.ops import Order

LOST = Fault(
    504,
    {
        "code": -1007,
        "msg": "Timeout waiting for response from backend server. Send status unknown; execution status unknown.",
    },
    executes=True,
)  # placed, but the reply is a 504


def creates(server: BinanceLoopback) -> list[str]:
    return [r for r in server.requests if r.startswith("POST /api/v3/order")]


def committed_and_sent(engine, *, bar: int) -> Order:
    """A buy the engine committed (``new``) and marked sent (``sent_at_ms``), as it stands when
    the create has gone out and the process dies before storing the reply."""
    with engine.store.transaction() as db:
        order = Order(
            session_id=engine.session.id,
            client_order_id=f"tl{engine.session.id}-{bar}-BTCBUSD-en",
            venue="binance",
            symbol=SYMBOL,
            side="buy",
            intent="enter_long",
            quote_amount=1_000.0,
            decided_ts=0,
            status="new",
        )
        db.add(order)
        db.flush()
        mark_sent(db, [order], now_ms=wall_ms())
    return order


def test_a_lost_reply_of_an_order_shown_late_is_found_and_filled_never_resent() -> None:
    """The venue executes the create but answers 504, and shows the order only 1 s later;
    ids are unique only among open orders, so a second create would have been accepted."""
    with BinanceLoopback(
        candles={}, prices={"BTCUSDT": 20_000.0}, client_ids_unique="open", visible_after_s=1.0, order_faults={1: LOST}
    ) as server:

        async def scenario():
            broker = broker_on(server)
            try:
                return await broker.submit(OrderRequest("tl1-1-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=500.0))
            finally:
                await broker.close()

        state = asyncio.run(scenario())
        assert state.status == "filled" and state.reason == ""
        assert [(f.quantity, f.price, f.trade_id) for f in state.fills] == [(0.025, 20_000.0, "10000")]
        assert server.creates == {"tl1-1-BTCUSDT-en": 1} and len(creates(server)) == 1
        assert state.venue_order_id == "1000"


def test_an_order_that_never_arrived_is_rejected_only_after_the_window_orders_and_trades() -> None:
    """A 503 before the order was taken. Another order of the account traded on the same
    symbol and side since the send: the broker attributes that trade (it is not ours) before
    concluding. Order of proof: queries by client id over the window, the venue's orders,
    its trades (and the orders behind them)."""
    with BinanceLoopback(
        candles={},
        prices={"BTCUSDT": 20_000.0},
        client_ids_unique="open",
        order_faults={2: Fault(503, {"code": -1001, "msg": "Internal error."})},
    ) as server:

        async def scenario():
            broker = broker_on(server)
            try:
                since = wall_ms()
                other = await broker.submit(OrderRequest("manual-1", "BTC-USDT", "buy", quote_amount=200.0))
                state = await broker.submit(OrderRequest("tl1-2-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=500.0))
                return since, other, state
            finally:
                await broker.close()

        since, other, state = asyncio.run(scenario())
        assert other.status == "filled"
        assert state.status == "rejected" and "never received" in state.reason
        assert server.creates == {"manual-1": 1, "tl1-2-BTCUSDT-en": 1}
        reads = [
            r for r in server.requests if r.startswith(("/api/v3/order?", "/api/v3/allOrders?", "/api/v3/myTrades?"))
        ]
        kinds = [r.split("?")[0].rsplit("/", 1)[1] + ("(id)" if "orderId=" in r else "") for r in reads]
        by_cid = [r for r in reads if "origClientOrderId=tl1-2-BTCUSDT-en" in r]
        assert len(by_cid) >= 2 and kinds[: len(by_cid)] == ["order"] * len(by_cid)  # the window, first
        assert kinds[len(by_cid) :] == ["allOrders", "myTrades", "order(id)"]  # then orders, trades, their owner
        assert int(reads[len(by_cid)].split("startTime=")[1].split("&")[0]) >= since - 200
        assert "orderId=1000" in reads[-1]  # the other order's trade, attributed to it (manual-1)


def _crashed_while_sending(settings, server: BinanceLoopback, name: str) -> str:
    """The engine committed a buy (``new``, ``sent_at_ms`` set), the create went out and the
    venue executed it, and the process died before it stored the reply."""
    engine = venue_engine(settings, server, name)
    order = committed_and_sent(engine, bar=1)
    cid = order.client_order_id

    async def send_and_die():
        try:
            await engine.broker.exchange.load_markets()
            await engine.broker.exchange.create_order(
                "BTC/BUSD", "market", "buy", None, None, {"clientOrderId": cid, "cost": 1_000.0}
            )
        finally:
            await engine.broker.close()

    asyncio.run(send_and_die())  # its reply never reaches the database
    engine.store.close()
    return cid


def test_restart_finds_an_order_the_venue_filled_and_never_sends_it_again(trained_world: World, tmp_path) -> None:
    """Crash while sending; the venue filled the order and shows it only 1 s after its create.
    The restart resolves it (filled, one fill, position and cash), sends nothing; a second
    create with the same client id would have been accepted (unique only among open orders)."""
    with BinanceLoopback(
        candles={},
        prices={"BTCBUSD": 17_200.0},
        client_ids_unique="open",
        visible_after_s=1.0,
        balances={"BUSD": 10_000.0},
    ) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        cid = _crashed_while_sending(settings, server, "restart-found")
        engine = venue_engine(settings, server, "restart-found")

        async def restart():
            try:
                await engine.reconcile()
                # what the venue would do with a second create: take it
                return await engine.broker.exchange.create_order(
                    "BTC/BUSD", "market", "buy", None, None, {"clientOrderId": cid, "cost": 1_000.0}
                )
            finally:
                await engine.broker.close()

        again = asyncio.run(restart())
        assert again["status"] == "closed"  # the venue accepted a duplicate client id ...
        assert server.creates[cid] == 2 and len(creates(server)) == 2  # ... the crashed create and that probe:
        probe = server.requests.index(creates(server)[1])
        assert not [r for r in server.requests[:probe] if r.startswith("POST")][1:]  # the restart sent nothing
        assert any(f"origClientOrderId={cid}" in r for r in server.requests[:probe])  # it asked by client id
        [order] = engine.store.orders(engine.session.id)
        assert order.status == "filled" and order.venue_order_id == "1000"
        [fill] = engine.store.fills(engine.session.id)
        assert (fill.trade_id, fill.quantity, fill.price) == ("10000", 0.05813, 17_200.0)
        assert engine.positions[SYMBOL] == pytest.approx(0.05813)
        assert engine.cash == pytest.approx(10_000.0 - 0.05813 * 17_200.0 * 1.001, rel=1e-12)
        assert engine.store.session("restart-found").halted == {}
        events = [(e.event, e.detail.get("status")) for e in engine.store.audit_log(engine.session.id)]
        assert ("order_reconciled", "filled") in events and ("symbol_halted", None) not in events


def test_venue_unreachable_at_restart_halts_the_symbol_and_sends_nothing(world: World, tmp_path) -> None:
    """The venue is down at restart: the order's outcome cannot be resolved. Its symbol is
    halted (reduce-only) with an audit row, `tradeloop live sessions` says so, and no create
    goes out. The halt is lifted only by an operator, and not while the order is unknown."""
    database_url = world.settings.database_url or f"sqlite:///{tmp_path / 'ops.db'}"
    with BinanceLoopback(
        candles={}, prices={"BTCBUSD": 17_200.0}, client_ids_unique="open", balances={"BUSD": 10_000.0}
    ) as server:
        settings = venue_settings(world, server, database_url)
        engine = venue_engine(settings, server, "unreachable")
        order = committed_and_sent(engine, bar=2)  # the venue never got it
        server.down = True

        async def restart():
            try:
                await engine.reconcile()
            finally:
                await engine.broker.close()

        asyncio.run(restart())
        assert not creates(server)
        assert server.signed_reads("/api/v3/order")  # it did try to ask
        [stored] = engine.store.orders(engine.session.id)
        halted = engine.store.session("unreachable").halted
        assert stored.status == "unknown" and list(halted) == [SYMBOL]
        assert order.client_order_id in halted[SYMBOL] and "venue unreachable" in halted[SYMBOL]
        [row] = [e for e in engine.store.audit_log(engine.session.id) if e.event == "symbol_halted"]
        assert row.order_id == stored.id and row.detail["symbol"] == SYMBOL

        listing = tradeloop("live", "sessions", settings=settings)
        assert listing.returncode == 0, listing.stderr
        assert f"{SYMBOL} halted" in listing.stdout
        assert f"`tradeloop live ack unreachable --symbol {SYMBOL}`" in listing.stdout

        refused = tradeloop("live", "ack", "unreachable", "--symbol", SYMBOL, settings=settings)
        assert (
            refused.returncode == 8 and "unknown outcome" in refused.stderr and order.client_order_id in refused.stderr
        )

        server.down = False  # the venue is back: the run-time check proves it never arrived
        engine = venue_engine(settings, server, "unreachable", every_bars=1)

        async def check():
            try:
                await engine.venue_check.run(
                    0,
                    engine.store,
                    engine.session.id,
                    apply=engine._apply,
                    holdings=lambda: (engine.cash, engine.positions),
                )
            finally:
                await engine.broker.close()

        asyncio.run(check())
        assert [o.status for o in engine.store.orders(engine.session.id)] == ["rejected"]
        assert not creates(server) and engine.store.session("unreachable").halted == halted  # still halted

        lifted = tradeloop("live", "ack", "unreachable", "--symbol", SYMBOL, settings=settings)
        assert lifted.returncode == 0, lifted.stderr
        assert engine.store.session("unreachable").halted == {}
        [resumed] = [e for e in engine.store.audit_log(engine.session.id) if e.event == "symbol_resumed"]
        assert resumed.actor == "operator-ann" and resumed.detail["symbol"] == SYMBOL
        engine.store.close()


def test_an_earlier_order_that_reused_the_client_id_is_no_proof() -> None:
    """Client ids are unique only among open orders, so an old, filled order may carry the same
    id (a session id reused after its database was recreated). A create refused by a 503
    before it was placed must not be 'found' as that old order: it is rejected, never filled
    with the old order's trades."""
    cid = "tl1-1670913600000-BTCBUSD-en"
    with BinanceLoopback(
        candles={},
        prices={"BTCBUSD": 17_200.0},
        client_ids_unique="open",
        order_faults={2: Fault(503, {"code": -1001, "msg": "Internal error."})},
    ) as server:

        async def scenario():
            broker = broker_on(server)
            try:
                old = await broker.submit(OrderRequest(cid, SYMBOL, "buy", quote_amount=100.0))
                hour_ago = wall_ms() - 3_600_000  # that order is from another life of the id
                for order in server.book:
                    order.update(time=hour_ago, transactTime=hour_ago, updateTime=hour_ago, workingTime=hour_ago)
                    for trade in order["_trades"]:
                        trade["time"] = hour_ago
                new = await broker.submit(OrderRequest(cid, SYMBOL, "buy", quote_amount=5_000.0))
                return old, new
            finally:
                await broker.close()

        old, new = asyncio.run(scenario())
        assert old.status == "filled" and old.venue_order_id == "1000"
        assert new.status == "rejected" and new.fills == () and new.venue_order_id is None
        assert server.creates == {cid: 2} and len(server.book) == 1  # the venue holds only the old order


def test_an_accepted_order_whose_fills_cannot_be_read_stays_acknowledged_for_the_venue_check() -> None:
    """The venue takes and fills the create but replies without fills (RESULT), and its trades
    endpoint is down: the order exists, so submit returns it as acknowledged with its venue id
    (never raises, never rejected); the fills are read once the venue answers."""
    with BinanceLoopback(
        candles={}, prices={"BTCUSDT": 20_000.0}, reply_type="RESULT", down_paths={"/api/v3/myTrades"}
    ) as server:

        async def scenario():
            broker = broker_on(server)
            try:
                state = await broker.submit(OrderRequest("tl1-3-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=500.0))
                server.down_paths.clear()
                later = await broker.resolve(
                    OrderRequest("tl1-3-BTCUSDT-en", "BTC-USDT", "buy", quote_amount=500.0), since_ms=wall_ms() - 1_000
                )
                return state, later
            finally:
                await broker.close()

        state, later = asyncio.run(scenario())
        assert state.status == "acknowledged" and state.venue_order_id == "1000" and state.fills == ()
        assert "fills not read yet" in state.reason
        assert later.status == "filled" and [f.trade_id for f in later.fills] == ["10000"]
        assert server.creates == {"tl1-3-BTCUSDT-en": 1}


def test_a_venue_unreachable_when_an_order_goes_out_never_kills_the_engine(trained_world: World, tmp_path) -> None:
    """Nothing listens at the venue's address (connection refused) from the first bar: the
    markets never load, so no create can be sent. Each order is rejected as never sent, the
    venue checks are audited as failed, and the engine trades its data to the end."""
    with BinanceLoopback(candles={}, prices={"BTCBUSD": 17_200.0}) as server:
        pass  # closed: its address now refuses connections
    settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
    engine = venue_engine(settings, server, "venue-gone")

    async def trade() -> int:
        try:
            return await run_bars(
                engine, settings, "venue-gone", until=lambda e: len(e.store.orders(e.session.id)) >= 2, limit=1040
            )
        finally:
            await engine.broker.close()

    asyncio.run(trade())
    orders = engine.store.orders(engine.session.id)
    assert {o.status for o in orders} == {"rejected"}
    assert all(
        "nothing went out" in e.detail["reason"]
        for e in engine.store.audit_log(engine.session.id)
        if e.event == "order_rejected"
    )
    assert any(e.event == "venue_check_failed" for e in engine.store.audit_log(engine.session.id))
    assert engine.store.session("venue-gone").halted == {}  # proven never sent: nothing to halt
