"""Run-time reconciliation against the real ccxt client and the loopback venue: open orders
polled, fills fetched by trade id, balances compared; a drift puts the session in
reduce-only (no entries, exits pass) until `tradeloop live ack NAME`."""

from __future__ import annotations

import asyncio

import pytest
from exchange_server import BinanceLoopback

from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import SYMBOL, run_bars, tradeloop, venue_engine, venue_settings


def events(engine, name: str) -> list:
    return [e for e in engine.store.audit_log(engine.session.id) if e.event == name]


def test_a_balance_drift_means_reduce_only_until_an_operator_acks(trained_world: World, tmp_path) -> None:
    """500 BUSD leave the account behind the engine's back while it holds BTC. The next check
    writes `balance_drift` and sets needs_ack: the held position is still sold (exit), the next
    entry is refused; after `tradeloop live ack` entries resume and the new balances are the
    reference (no second drift)."""
    name = "drift"
    with BinanceLoopback(
        candles={}, prices={"BTCBUSD": 17_200.0}, client_ids_unique="open", balances={"BUSD": 10_000.0}
    ) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = venue_engine(settings, server, name, every_bars=5)

        def orders(side: str) -> list:
            return [o for o in engine.store.orders(engine.session.id) if o.side == side]

        async def scenario() -> None:
            try:
                await engine.reconcile()
                await run_bars(engine, settings, name, until=lambda e: e.positions.get(SYMBOL, 0.0) > 0)
                assert [e.detail for e in events(engine, "venue_baseline")] == [{"BTC": 0.0, "BUSD": 0.0}]
                server.balances["BUSD"] -= 500.0  # a withdrawal the engine knows nothing of
                await run_bars(engine, settings, name, until=lambda e: e.store.session(name).needs_ack, limit=5)
                listing = tradeloop("live", "sessions", settings=settings)
                assert listing.returncode == 0 and "needs ack" in listing.stdout and "BUSD: venue" in listing.stdout
                buys = len(orders("buy"))
                await run_bars(engine, settings, name, until=lambda e: e.positions.get(SYMBOL, 0.0) == 0.0)
                assert orders("sell")[-1].status == "filled"  # the exit went through, reduce-only or not
                await run_bars(engine, settings, name, until=lambda e: events(e, "entry_refused"))
                assert len(orders("buy")) == buys  # the entry was refused, not sent
                acked = tradeloop("live", "ack", name, settings=settings)
                assert acked.returncode == 0, acked.stderr
                await run_bars(engine, settings, name, until=lambda e: e.positions.get(SYMBOL, 0.0) > 0)
                assert len(orders("buy")) == buys + 1 and orders("buy")[-1].status == "filled"
                await run_bars(engine, settings, name, until=lambda e: e.bars % 5 == 1, limit=5)  # one more check
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        [drift] = events(engine, "balance_drift")
        assert drift.detail["BUSD"]["off_by"] == pytest.approx(-500.0, abs=1e-6)
        assert list(drift.detail) == ["BUSD"]  # BTC matched within its amount step
        [refused] = events(engine, "entry_refused")
        assert refused.detail["symbol"] == SYMBOL and "balance drift" in refused.detail["reason"]
        [ack] = events(engine, "session_acknowledged")
        assert ack.actor == "operator-ann" and ack.detail["needs_ack"].startswith("balance drift: BUSD")
        baselines = [e.detail for e in events(engine, "venue_baseline")]
        assert len(baselines) == 2 and baselines[1]["BUSD"] == pytest.approx(-500.0, abs=1e-6)
        assert engine.store.session(name).needs_ack is None
        assert sum(o.status == "filled" for o in engine.store.orders(engine.session.id)) == len(
            engine.store.fills(engine.session.id)
        )


def test_open_orders_are_polled_and_fills_fetched_by_trade_id(trained_world: World, tmp_path) -> None:
    """The venue rests market orders (NEW) and fills them later, first in part: the check stores
    the partial fill of a still-open order from the account's trades (by trade id), then the
    rest when the order is no longer open; each fill once, and the book matches the balances."""
    name = "polled"
    with BinanceLoopback(
        candles={}, prices={"BTCBUSD": 17_200.0}, hold_orders=True, balances={"BUSD": 10_000.0}
    ) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = venue_engine(settings, server, name, every_bars=1)

        def buy():
            return next(o for o in engine.store.orders(engine.session.id) if o.side == "buy")

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, name, until=lambda e: e.store.orders(e.session.id))
                assert buy().status == "acknowledged" and not engine.store.fills(engine.session.id)
                [cid] = server.fill_held(part=0.5)
                assert cid == buy().client_order_id
                await run_bars(engine, settings, name, until=lambda e: e.store.fills(e.session.id), limit=1)
                assert buy().status == "acknowledged"  # still open on the venue
                server.fill_held()
                await run_bars(engine, settings, name, until=lambda e: buy().status == "filled", limit=1)
                await run_bars(engine, settings, name, until=lambda e: True, limit=1)  # a settled check
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        order = buy()
        fills = engine.store.fills(engine.session.id)
        venue_trades = server.orders[order.client_order_id]["_trades"]
        assert [f.trade_id for f in fills] == [str(t["id"]) for t in venue_trades] == ["10000", "10001"]
        assert order.filled_qty == pytest.approx(float(server.orders[order.client_order_id]["executedQty"]))
        assert engine.positions[SYMBOL] == pytest.approx(server.balances["BTC"], abs=1e-12)
        assert engine.cash == pytest.approx(server.balances["BUSD"], abs=1e-6)
        assert any("fromId=" not in r for r in server.signed_reads("/api/v3/myTrades"))  # before any fill
        assert any("fromId=10001" in r for r in server.signed_reads("/api/v3/myTrades"))  # after the first
        assert server.signed_reads("/api/v3/openOrders")
        assert not events(engine, "balance_drift") and not events(engine, "symbol_halted")
        assert [e.detail["trade_id"] for e in events(engine, "order_filled")] == ["10000", "10001"]
