"""Limit entries on a venue (``entry_order='limit'``): a live session on the loopback Binance spot
venue through the real ccxt client, its entries decided by the champion on the bundled 1m sample.

The entry rests as a GTC limit buy at ``close * (1 - limit_offset)`` of its decision bar
(rounded to the market's 0.01 tick on the way out) for ``limit_ttl_bars`` of the symbol's 1m
candles; the engine cancels it after the bar that completes them (``live.order_manager``
rule 6). Expected prices and quantities are worked out from the decision bar's close (the
sample's candle), the session's options and the venue's rules (a resting buy fills at its
limit when a trade prints below it; commission 0.1% in the quote asset)."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import pytest
from exchange_server import BinanceLoopback

from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine, check_live_config
from live.models import ModelSlot
from live.order_manager import expire_entries
from live.runner import SessionConfig, backtest_config, open_session
from tests.live.conftest import World, trained_world  # noqa: F401  (shared fixture)
from tests.live.venue_session import START, SYMBOL, broker_on, run_bars, venue_settings
from tradeloop.backtest import BacktestConfig
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore, Order
from tradeloop.registry import ModelRegistry
from tradeloop.risk import RiskConfig

PAIR = SYMBOL.replace("-", "")
BAR_MS = 60_000
ABOVE = 18_000.0  # the venue's last price: well above every limit buy of the sample (~17,100-17,200)


def limit_engine(
    settings, server: BinanceLoopback, name: str, orders: dict, *, risk: RiskConfig | None = None
) -> LiveEngine:
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
        orders={"entry_order": "limit", **orders},
        risk=risk or RiskConfig(),
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


def entry(engine: LiveEngine) -> Order:
    """The session's first limit entry."""
    return min((o for o in engine.store.orders(engine.session.id) if o.intent == "enter_long"), key=lambda o: o.id)


def decision_close(engine: LiveEngine, ts: int) -> float:
    """The sample's close of ``SYMBOL`` at ``ts`` (the candle the engine decided on)."""
    row = engine.window.filter((engine.window["symbol"] == SYMBOL) & (engine.window["ts"] == ts))
    return float(row["close"][0])


def stop(engine: LiveEngine) -> Order:
    """The first entry's stop-loss leg."""
    return next(o for o in engine.store.orders(engine.session.id) if o.intent == "stop_loss")


def audits(engine: LiveEngine, order: Order) -> list:
    return [a for a in engine.store.audit_log(engine.session.id) if a.order_id == order.id]


def run(engine: LiveEngine, scenario) -> None:
    async def main() -> None:
        try:
            await engine.reconcile()
            await scenario()
        finally:
            await engine.broker.close()

    asyncio.run(main())


def placed(engine: LiveEngine) -> bool:
    return any(o.intent == "enter_long" for o in engine.store.orders(engine.session.id))


def on_tick(price: float) -> Decimal:
    """``price`` rounded to the market's 0.01 tick, to the nearest (ccxt's price_to_precision)."""
    return Decimal(repr(price)).quantize(Decimal("0.01"))


def test_a_limit_entry_rests_then_fills_when_a_trade_prints_through_it(trained_world: World, tmp_path) -> None:
    """The entry decided at close c rests at c * (1 - 0.0031), rounded down to the tick by the
    risk engine (a buy's limit in the trader's favour), for 5000 / that price BTC (half the
    10,000 BUSD equity); a trade 5 BUSD below it fills all of it at the limit, the next bar's
    venue check stores the fill, and nothing is canceled."""
    name = "limit-fills"
    with BinanceLoopback(candles={}, prices={PAIR: ABOVE}, balances={"BUSD": 10_000.0}) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = limit_engine(settings, server, name, {"limit_offset": 0.0031, "limit_ttl_bars": 3})

        async def scenario() -> None:
            await run_bars(engine, settings, name, until=placed)
            order = entry(engine)
            raw = decision_close(engine, order.decided_ts) * (1 - 0.0031)
            down = (Decimal(repr(raw)) // Decimal("0.01")) * Decimal("0.01")
            assert order.status == "acknowledged" and order.order_type == "limit"
            assert order.price == pytest.approx(float(down), abs=1e-9)
            [sent] = server.calls("POST", "/api/v3/order")
            assert (sent["type"], sent["timeInForce"], sent["side"]) == ("LIMIT", "GTC", "BUY")
            assert Decimal(sent["price"]) == down
            assert float(sent["quantity"]) == pytest.approx(5_000.0 / float(down), abs=1e-5)
            server.trade(PAIR, float(down) - 5.0)
            await run_bars(engine, settings, name, until=lambda e: entry(e).status == "filled", limit=1)

        run(engine, scenario)
        order = entry(engine)
        venue = server.orders[order.client_order_id]
        qty, px = float(venue["origQty"]), float(venue["price"])
        assert venue["status"] == "FILLED" and float(venue["executedQty"]) == qty
        assert order.filled_qty == pytest.approx(qty) and order.avg_price == pytest.approx(px)
        assert engine.positions[SYMBOL] == pytest.approx(qty)
        assert engine.cash == pytest.approx(10_000.0 - qty * px * 1.001)  # the venue's 0.1% commission
        assert not [a for a in audits(engine, order) if a.event == "order_cancel_requested"]
        assert server.creates[order.client_order_id] == 1


def test_an_unfilled_limit_entry_is_canceled_on_the_venue_after_limit_ttl_bars(trained_world: World, tmp_path) -> None:
    """No trade reaches the limit: after the third 1m candle since the decision the entry is
    canceled (``cancel_requested`` committed first), the venue's open orders no longer list it,
    and its protective leg, never sent, is canceled with it. Without the risk engine's rounding
    the row keeps c * (1 - 0.0047) and ccxt rounds it to the nearest tick on the way out."""
    name = "limit-expires"
    with BinanceLoopback(candles={}, prices={PAIR: ABOVE}, balances={"BUSD": 10_000.0}) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        orders = {"limit_offset": 0.0047, "limit_ttl_bars": 3, "stop_loss": 0.01}
        engine = limit_engine(settings, server, name, orders, risk=RiskConfig(check_market_rules=False))
        seen: list[tuple[int, str]] = []
        listed: list[set[str]] = []

        def step(e: LiveEngine) -> bool:
            seen.append((e.session.last_bar_ts, entry(e).status))
            return entry(e).status == "canceled"

        async def scenario() -> None:
            await run_bars(engine, settings, name, until=placed)
            listed.append(await engine.broker.open_orders(SYMBOL))
            await run_bars(engine, settings, name, until=step, limit=3)
            listed.append(await engine.broker.open_orders(SYMBOL))
            await run_bars(engine, settings, name, until=lambda e: stop(e).status == "canceled", limit=1)

        run(engine, scenario)
        order = entry(engine)
        raw = decision_close(engine, order.decided_ts) * (1 - 0.0047)
        assert order.price == pytest.approx(raw, rel=1e-12) and on_tick(raw) != Decimal(repr(raw))
        [sent] = server.calls("POST", "/api/v3/order")
        assert Decimal(sent["price"]) == on_tick(raw)
        assert seen == [
            (order.decided_ts + BAR_MS, "acknowledged"),
            (order.decided_ts + 2 * BAR_MS, "acknowledged"),
            (order.decided_ts + 3 * BAR_MS, "canceled"),
        ]
        assert listed == [{order.client_order_id}, set()]
        assert server.orders[order.client_order_id]["status"] == "CANCELED"
        assert order.filled_qty == 0.0 and SYMBOL not in engine.positions
        events = [a.event for a in audits(engine, order)]
        assert events.index("order_cancel_requested") < events.index("order_canceled")
        why = next(a for a in audits(engine, order) if a.event == "order_cancel_requested").detail["reason"]
        assert "3 candle(s)" in why and "limit_ttl_bars" in why
        assert stop(engine).parent_id == order.id and server.creates[stop(engine).client_order_id] == 0


def test_a_partly_filled_limit_entry_keeps_its_fill_at_expiry_and_its_stop_arms_from_it(
    trained_world: World, tmp_path
) -> None:
    """A trade of 0.1 BTC prints through the limit: 0.1 of the ~0.29 BTC entry fills at the
    limit. At expiry the rest is canceled, the 0.1 stays (one fill, the position), and the
    native stop-loss goes out for 0.1 BTC at fill * 0.99 on the tick."""
    name = "limit-partial"
    with BinanceLoopback(candles={}, prices={PAIR: ABOVE}, balances={"BUSD": 10_000.0}) as server:
        info = next(s for s in server.exchange_info["symbols"] if s["symbol"] == PAIR)
        info["orderTypes"] = [*info["orderTypes"], "STOP_LOSS"]  # a market with native stop-market orders
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = limit_engine(settings, server, name, {"limit_offset": 0.0031, "limit_ttl_bars": 3, "stop_loss": 0.01})
        fill: list[float] = []

        async def scenario() -> None:
            await run_bars(engine, settings, name, until=placed)
            fill.append(float(server.orders[entry(engine).client_order_id]["price"]))
            assert server.trade(PAIR, fill[0] - 5.0, qty=0.1) == [entry(engine).client_order_id]
            decided = entry(engine).decided_ts
            await run_bars(engine, settings, name, until=lambda e: e.session.last_bar_ts == decided + 2 * BAR_MS)
            assert entry(engine).status == "acknowledged" and entry(engine).filled_qty == pytest.approx(0.1)
            assert stop(engine).status == "new"  # waits for its entry to end
            await run_bars(engine, settings, name, until=lambda e: entry(e).status == "canceled", limit=1)
            await run_bars(engine, settings, name, until=lambda e: stop(e).status == "acknowledged", limit=1)

        run(engine, scenario)
        order = entry(engine)
        venue = server.orders[order.client_order_id]
        assert venue["status"] == "CANCELED" and venue["executedQty"] == "0.10000000"
        assert float(venue["origQty"]) > 0.25  # most of it never filled
        assert order.status == "canceled" and order.filled_qty == pytest.approx(0.1)
        assert [(f.quantity, f.price) for f in engine.store.fills(engine.session.id)] == [(0.1, fill[0])]
        assert engine.positions[SYMBOL] == pytest.approx(0.1)
        leg = server.orders[stop(engine).client_order_id]
        assert (leg["type"], leg["side"], leg["origQty"]) == ("STOP_LOSS", "SELL", "0.10000000")
        assert Decimal(leg["stopPrice"]) == on_tick(fill[0] * 0.99)


def test_a_new_signal_of_the_symbol_cancels_its_resting_entry(trained_world: World, tmp_path) -> None:
    """As the kernel's rule 4: a later bar's signal of the symbol cancels the entry resting
    there; the bar that placed it, or another symbol's signal, does not."""
    name = "limit-replaced"
    with BinanceLoopback(candles={}, prices={PAIR: ABOVE}, balances={"BUSD": 10_000.0}) as server:
        settings = venue_settings(trained_world, server, f"sqlite:///{tmp_path / 'ops.db'}")
        engine = limit_engine(settings, server, name, {"limit_offset": 0.0031, "limit_ttl_bars": 30})
        answers = []

        async def expire(now_ts: int, signalled: list[str]):
            return await expire_entries(
                engine.store, engine.broker, engine.session.id, now_ts=now_ts, window=engine.window,
                config=engine.backtest, signalled=signalled, apply=engine._apply,
            )  # fmt: skip

        async def scenario() -> None:
            await run_bars(engine, settings, name, until=placed)
            decided = entry(engine).decided_ts
            answers.append(await expire(decided, [SYMBOL]))  # the signal that placed it
            answers.append(await expire(decided + BAR_MS, ["ETH-BUSD"]))
            answers.append(await expire(decided + BAR_MS, [SYMBOL]))

        run(engine, scenario)
        order = entry(engine)
        assert [[s.status for s in a] for a in answers] == [[], [], ["canceled"]]
        assert server.orders[order.client_order_id]["status"] == "CANCELED" and order.status == "canceled"
        why = next(a for a in audits(engine, order) if a.event == "order_cancel_requested").detail["reason"]
        assert why == f"a new signal of {SYMBOL} replaced it"


def test_live_sessions_take_limit_entries_and_still_refuse_bad_values(trained_world: World, tmp_path) -> None:
    limit = BacktestConfig(entry_order="limit", limit_offset=0.002, limit_ttl_bars=3, maker_fee_rate=0.0002)
    check_live_config(limit, paper=False)
    store = OpsStore.open(f"sqlite:///{tmp_path / 'ops.db'}")
    registry = ModelRegistry(trained_world.settings.registry_dir)

    def session(name: str, orders: dict):
        return open_session(
            store,
            registry,
            SessionConfig(
                name=name, exchange="binance", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START,
                allow_in_sample=True, orders=orders,
            ),
        )  # fmt: skip

    made = session("limit-ok", {"entry_order": "limit", "limit_offset": 0.002, "limit_ttl_bars": 3})
    stored = backtest_config(made)
    assert (made.mode, stored.entry_order, stored.limit_offset, stored.limit_ttl_bars) == ("live", "limit", 0.002, 3)
    bad = {
        "limit_ttl_bars=0: input should be greater than or equal to 1": {"entry_order": "limit", "limit_ttl_bars": 0},
        "limit_offset=1.5: input should be less than 1": {"entry_order": "limit", "limit_offset": 1.5},
        "maker_fee_rate=0.5: input should be less than 0.1": {"entry_order": "limit", "maker_fee_rate": 0.5},
        "limit_offset: for limit entries only; set entry_order='limit'": {"limit_offset": 0.002},
    }
    for n, (message, orders) in enumerate(bad.items()):
        with pytest.raises(ConfigError, match=re.escape(message)):
            session(f"limit-bad-{n}", orders)
    assert [s.name for s in store.sessions()] == ["limit-ok"]
