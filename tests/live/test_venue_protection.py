"""Protective legs on a venue (``live.venue_protection``): a live session on the loopback
Binance spot venue through the real ccxt client, its entries decided by the champion on the
bundled 1m sample.

Expected levels are worked out by hand from the fill price the venue gives (a market order
fills at the venue's last price, which the test sets) and the session's options: a long's
stop at ``fill * (1 - stop_loss)``, its target at ``fill * (1 + take_profit)``, a trailing
stop at ``peak * (1 - trailing_stop)``; prices to the market's 0.01 tick."""

from __future__ import annotations

import asyncio

import pytest
from exchange_server import BinanceLoopback

from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, open_session
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import START, SYMBOL, broker_on, run_bars, venue_settings
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry

PAIR = SYMBOL.replace("-", "")


def list_native_stops(server: BinanceLoopback) -> None:
    info = next(s for s in server.exchange_info["symbols"] if s["symbol"] == PAIR)
    info["orderTypes"] = [*info["orderTypes"], "STOP_LOSS", "TAKE_PROFIT"]


def engine_with(settings, server: BinanceLoopback, name: str, orders: dict) -> LiveEngine:
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    config = SessionConfig(
        name=name,
        exchange="binance",
        symbols=(SYMBOL,),
        timeframe="1m",
        mode="live",
        start=START,
        allow_in_sample=True,
        orders=orders,
    )
    session = open_session(store, registry, config)
    return LiveEngine(
        store=store,
        session=session,
        broker=broker_on(server),
        bus=make_bus(None),
        slot=ModelSlot.for_session(registry, session),
        backtest=backtest_config(session),
        config=EngineConfig(venue_check_every_bars=1, publish=False),
    )


def rows(engine: LiveEngine) -> dict[str, object]:
    """The session's orders by intent (the latest of each)."""
    return {o.intent: o for o in sorted(engine.store.orders(engine.session.id), key=lambda o: o.id)}


def audits(engine: LiveEngine, event: str) -> list:
    return [e for e in engine.store.audit_log(engine.session.id) if e.event == event]


def held(engine: LiveEngine) -> float:
    return engine.positions.get(SYMBOL, 0.0)


def run(engine: LiveEngine, scenario) -> None:
    async def main() -> None:
        try:
            await scenario()
        finally:
            await engine.broker.close()

    asyncio.run(main())


def test_native_legs_are_placed_at_the_fill_and_a_fired_stop_cancels_the_target(trained_world: World, tmp_path) -> None:
    """Fill at 17200: the stop-loss goes out as a native STOP_LOSS at 17200 * 0.99 = 17028 and
    the take-profit at 17200 * 1.03 = 17716, for the filled quantity, only after the entry
    filled. A trade at 17000 fires the stop; the next bar's venue check learns it, the position
    is flat and the take-profit is canceled on the venue."""
    name = "native-legs"
    with BinanceLoopback(candles={}, prices={PAIR: 17_200.0}, balances={"BUSD": 10_000.0}) as server:
        list_native_stops(server)
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = engine_with(settings, server, name, {"stop_loss": 0.01, "take_profit": 0.03})

        async def scenario() -> None:
            await engine.reconcile()
            await run_bars(engine, settings, name, until=lambda e: held(e) > 0)
            by = rows(engine)
            entry, sl, tp = by["enter_long"], by["stop_loss"], by["take_profit"]
            venue_entry = server.orders[entry.client_order_id]
            assert server.orders[sl.client_order_id]["type"] == "STOP_LOSS"
            assert server.orders[tp.client_order_id]["type"] == "TAKE_PROFIT"
            assert float(server.orders[sl.client_order_id]["stopPrice"]) == pytest.approx(17_028.0)
            assert float(server.orders[tp.client_order_id]["stopPrice"]) == pytest.approx(17_716.0)
            for leg in (sl, tp):
                assert float(server.orders[leg.client_order_id]["origQty"]) == pytest.approx(
                    float(venue_entry["executedQty"])
                )
                assert server.orders[leg.client_order_id]["side"] == "SELL"
                assert leg.status == "acknowledged" and leg.sent_at_ms >= entry.sent_at_ms
            assert sl.trigger_price == pytest.approx(17_028.0) and tp.trigger_price == pytest.approx(17_716.0)
            server.trade(PAIR, 17_000.0)  # through the stop
            await run_bars(engine, settings, name, until=lambda e: held(e) == 0.0, limit=3)
            await run_bars(engine, settings, name, until=lambda e: rows(e)["take_profit"].status == "canceled", limit=2)

        run(engine, scenario)
        by = rows(engine)
        assert by["stop_loss"].status == "filled" and by["stop_loss"].avg_price == pytest.approx(17_000.0)
        assert server.orders[by["take_profit"].client_order_id]["status"] == "CANCELED"
        assert server.creates[by["stop_loss"].client_order_id] == 1  # one create each, never resent
        assert server.creates[by["take_profit"].client_order_id] == 1


def test_a_trailing_stop_is_moved_by_cancel_replace_as_the_peak_rises(trained_world: World, tmp_path) -> None:
    """Fill at 17100: the trailing stop rests at 17100 * 0.99 = 16929. The price then trades up
    (17400 on the venue); the next bar's high H joins the peak, and the stop is moved to
    max(17100, H) * 0.99 in one cancel-replace: the old one canceled, one live stop."""
    name = "trailing-legs"
    with BinanceLoopback(candles={}, prices={PAIR: 17_100.0}, balances={"BUSD": 10_000.0}) as server:
        list_native_stops(server)
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = engine_with(settings, server, name, {"trailing_stop": 0.01})
        seen: dict[str, float] = {}

        async def scenario() -> None:
            await engine.reconcile()
            await run_bars(engine, settings, name, until=lambda e: held(e) > 0)
            first = rows(engine)["trailing_stop"]
            assert float(server.orders[first.client_order_id]["stopPrice"]) == pytest.approx(16_929.0)
            seen["first"] = first.id
            server.trade(PAIR, 17_400.0)  # the last price rises (nothing rests to trade against)
            await run_bars(engine, settings, name, until=lambda e: True, limit=1)
            seen["high"] = float(engine.window["high"][-1])

        run(engine, scenario)
        legs = [o for o in engine.store.orders(engine.session.id) if o.intent == "trailing_stop"]
        assert [o.id for o in legs][0] == seen["first"] and len(legs) == 2
        old, new = legs
        expected = round(max(17_100.0, seen["high"]) * 0.99, 2)
        assert expected > 16_929.0  # the sample's bar traded above the fill
        assert old.status == "canceled" and server.orders[old.client_order_id]["status"] == "CANCELED"
        assert new.status == "acknowledged" and float(server.orders[new.client_order_id]["stopPrice"]) == pytest.approx(
            expected
        )
        [replace] = server.calls("POST", "/api/v3/order/cancelReplace")
        assert replace["cancelOrigClientOrderId"] == old.client_order_id and replace["type"] == "STOP_LOSS"
        assert [o["clientOrderId"] for o in server.book if o["status"] == "NEW" and o["type"] == "STOP_LOSS"] == [
            new.client_order_id
        ]


def test_a_market_without_native_stops_gets_an_engine_managed_exit_after_the_cross(
    trained_world: World, tmp_path
) -> None:
    """BTCBUSD lists no STOP_LOSS / TAKE_PROFIT (market) orders: the legs stay with the engine,
    their triggers from the fill at 17500 (stop 17325, target 18375). The sample's next bar
    trades around 17200, below the stop: at its close the leg goes out as a reduce-only market
    sell of the position (filled at the venue's 17500), and the target is canceled."""
    name = "managed-legs"
    with BinanceLoopback(candles={}, prices={PAIR: 17_500.0}, balances={"BUSD": 10_000.0}) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = engine_with(settings, server, name, {"stop_loss": 0.01, "take_profit": 0.05})
        seen: dict[str, object] = {}

        async def scenario() -> None:
            await engine.reconcile()
            await run_bars(engine, settings, name, until=lambda e: held(e) > 0)
            by = rows(engine)
            seen["qty"] = held(engine)
            assert (by["stop_loss"].status, by["take_profit"].status) == ("new", "new")  # nothing sent
            assert by["stop_loss"].trigger_price == pytest.approx(17_325.0)
            assert by["take_profit"].trigger_price == pytest.approx(18_375.0)
            assert server.creates[by["stop_loss"].client_order_id] == 0
            await run_bars(engine, settings, name, until=lambda e: True, limit=1)
            seen["low"] = float(engine.window["low"][-1])

        run(engine, scenario)
        assert seen["low"] <= 17_325.0  # the bar crossed the stop (hand check of the data)
        by = rows(engine)
        sl, tp = by["stop_loss"], by["take_profit"]
        assert sl.status == "filled" and sl.order_type == "market" and sl.avg_price == pytest.approx(17_500.0)
        assert sl.filled_qty == pytest.approx(seen["qty"]) and held(engine) == 0.0
        assert tp.status == "canceled" and server.creates[tp.client_order_id] == 0
        venue_exit = server.orders[sl.client_order_id]
        assert (venue_exit["type"], venue_exit["side"]) == ("MARKET", "SELL")
        [fired] = audits(engine, "protection_triggered")
        assert fired.detail["trigger_price"] == pytest.approx(17_325.0)
        assert len(audits(engine, "protection_engine_managed")) == 2
