"""A live session on USDⓈ-M perpetuals that trades: the runner's ``make_broker`` gives
``binanceusdm`` the perpetuals broker, which sets each symbol's margin mode and leverage on the
loopback venue before the first order; the promoted model (a rule that shorts) opens a short and
closes it; the funding the venue pays on that short is booked once into the session's cash (a
restart included), audited, with its row; the venue's liquidation price is written to the
position's row."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest
from futures_exchange_server import BinanceUsdmLoopback

from live.brokers.perps import PerpInstrument, PerpsBroker
from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, make_broker, open_session, replay_feed
from tests.live.conftest import World
from tests.live.venue_session import START
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import OpsStore
from tradeloop.ops.models import CashFlow
from tradeloop.ops.models import Position as PositionRow
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.settings import Settings
from tradeloop.strategies import SmaCross
from tradeloop.strategies.rules import ThresholdRule
from tradeloop.thresholds import Universe
from tradeloop.trading import OrderStatus

SYMBOL, VENUE_SYMBOL = "BTC-USDT", "BTCUSDT"
PRICE = 17_200.0  # the loopback's last price: every market order fills there
PERPS = {SYMBOL: PerpInstrument(leverage=3, margin_mode="isolated")}
CONFIG = SessionConfig(
    name="perp", exchange="binanceusdm", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START,
    allow_in_sample=True, perps=PERPS,
)  # fmt: skip
SETTLED = {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}


def _world(trained_world: World, tmp_path, server: BinanceUsdmLoopback) -> Settings:
    """The bundled binance 1m BTC candles as the perpetual's series, in a lake of this test's own,
    and in its own registry (``data_dir/registry``) the shared champion with a rule that shorts and
    a bar of 0, so that every crossing trades (this sample's classifier rejects each short)."""
    lake = CandleLake(tmp_path / "lake")
    source = CandleLake(trained_world.settings.lake_dir).read(SeriesKey("binance", "BTC-BUSD", "1m"))
    lake.write(SeriesKey("binanceusdm", SYMBOL, "1m"), source)
    _, model = ModelRegistry(trained_world.settings.registry_dir).load("sma_cross")  # a copy of its own
    model.estimator.threshold_ = 0.0
    shorting = dataclasses.replace(
        model,
        strategy=SmaCross(fast=10, slow=40, rule=ThresholdRule(allow_short=True)),
        universe=Universe(exchange="binanceusdm", timeframe="1m", symbols=(SYMBOL,)),
    )
    settings = Settings(
        TRADELOOP_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}",
        TRADELOOP_EXCHANGE="binanceusdm",  # the host's keys go to the host's exchange only
        TRADELOOP_EXCHANGE_API_KEY=server.api_key,
        TRADELOOP_EXCHANGE_SECRET=server.secret,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
    )
    registry = ModelRegistry(settings.registry_dir)
    registry.promote("sma_cross", registry.register(shorting.save(tmp_path / "model")), lineage=Lineage(run_id="t"))
    return settings


def _engine(settings: Settings) -> LiveEngine:
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, CONFIG)
    broker = make_broker(settings, "live", exchange="binanceusdm", backtest=backtest_config(session), perps=PERPS)
    broker.exchange.enableRateLimit = False
    return LiveEngine(
        store=store,
        session=session,
        broker=broker,
        bus=make_bus(None),
        slot=ModelSlot.for_session(registry, session),
        backtest=backtest_config(session),
        config=EngineConfig(venue_check_every_bars=1, publish=False),
    )


async def _bars(engine: LiveEngine, settings: Settings, *, until: Callable[[LiveEngine], bool], limit: int) -> int:
    """Feed the replay bar by bar until ``until(engine)``; fails when ``limit`` bars did not get there."""
    feed = replay_feed(settings, CONFIG)
    done = 0
    async for batch in feed.batches(after_ts=engine.store.session(CONFIG.name).last_bar_ts):
        if engine.window.is_empty():
            engine.window = feed.history(before_ts=batch.ts, bars=400)
        await engine.on_batch(batch)
        done += 1
        if until(engine):
            return done
        if done >= limit:
            break
    orders = [(o.intent, o.side, o.status, o.quantity) for o in engine.store.orders(engine.session.id)]
    raise AssertionError(f"not reached within {done} bars; orders: {orders}")


def _held(engine: LiveEngine) -> float:
    return engine.positions.get(SYMBOL, 0.0)


def _settled(engine: LiveEngine) -> bool:
    """No order of the session is still open or in flight."""
    return all(o.status in SETTLED for o in engine.store.orders(engine.session.id))


def _covered(engine: LiveEngine) -> bool:
    """The session's short was closed: an ``exit_short`` order filled."""
    return any(
        o.intent == "exit_short" and o.status == OrderStatus.FILLED for o in engine.store.orders(engine.session.id)
    )


def _events(engine: LiveEngine, name: str) -> list:
    return [e for e in engine.store.audit_log(engine.session.id) if e.event == name]


def test_a_short_pays_funding_booked_once_into_cash_and_the_liquidation_price(trained_world: World, tmp_path) -> None:
    """The session shorts, the venue pays it funding, the engine restarts, the session covers."""
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: PRICE}, balances={"USDT": 10_000.0}) as server:
        settings = _world(trained_world, tmp_path, server)
        engine = _engine(settings)
        assert isinstance(engine.broker, PerpsBroker)
        init_cash = engine.cash
        funded: dict[str, float] = {}

        async def scenario() -> None:
            try:
                await _bars(engine, settings, until=lambda e: _held(e) < 0 and _settled(e), limit=600)
                funded["qty"] = -_held(engine)
                assert server.positions[VENUE_SYMBOL].amount == pytest.approx(-funded["qty"])  # the venue's short
                [paid] = server.pay_funding(VENUE_SYMBOL, 0.0001)
                funded["received"] = float(paid["income"])
                fills, cash = len(engine.store.fills(engine.session.id)), engine.cash
                [before] = engine.store.frame(PositionRow, engine.session.id).to_dicts()
                await _bars(engine, settings, until=lambda e: True, limit=1)  # its venue check reads the payment
                assert len(engine.store.fills(engine.session.id)) == fills  # nothing was in flight: no fill
                assert engine.cash - cash == pytest.approx(funded["received"], rel=1e-9)
                [row] = engine.store.frame(PositionRow, engine.session.id).to_dicts()
                assert row["quantity"] == before["quantity"] == -funded["qty"]
                assert row["realized_pnl"] - before["realized_pnl"] == pytest.approx(funded["received"], rel=1e-9)
                funded["liquidation"] = row["liquidation_price"]
                funded["cash"] = engine.cash
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        store, qty, received = engine.store, funded["qty"], funded["received"]
        assert received == pytest.approx(qty * PRICE * 0.0001, rel=1e-6)  # a short receives a positive rate
        assert not _events(engine, "model_fallback") and engine.slot.current.strategy.rule.allow_short
        # the margin mode, then the leverage, set on the venue before the session's first order
        posts = [r.split(" ")[1] for r in server.requests if r.startswith("POST")]
        assert posts[:3] == ["/fapi/v1/marginType", "/fapi/v1/leverage", "/fapi/v1/order"]
        assert posts.count("/fapi/v1/marginType") == posts.count("/fapi/v1/leverage") == 1
        assert server.margin_type == {VENUE_SYMBOL: "ISOLATED"} and server.leverage == {VENUE_SYMBOL: 3}
        [flow] = store.frame(CashFlow, engine.session.id).to_dicts()
        assert flow["kind"] == "funding" and flow["amount"] == pytest.approx(received)
        assert (flow["venue"], flow["symbol"]) == ("binanceusdm", "BTC-USDT")  # keyed as the position row
        assert store.session("perp").cash == pytest.approx(funded["cash"])
        # the venue's liquidation price of the short, written to the position's row: Binance's isolated
        # one-way formula (WB + cum - side*Q*EP) / (Q*mmr - side*Q), BTCUSDT's first bracket mmr 0.4%, cum 0,
        # the isolated wallet (initial margin at leverage 3) holding the funding received
        wallet = qty * PRICE / 3 + received
        assert funded["liquidation"] == pytest.approx((wallet + 0.0 + qty * PRICE) / (qty * 0.004 + qty), rel=1e-6)

        restarted = _engine(settings)  # the same payment, read again after a restart, is not booked again
        assert restarted.cash == pytest.approx(funded["cash"])

        async def again() -> None:
            try:
                await _bars(restarted, settings, until=lambda e: _covered(e) and _settled(e), limit=600)
            finally:
                await restarted.broker.close()

        asyncio.run(again())
        assert len(store.frame(CashFlow, engine.session.id)) == 1
        assert len(_events(restarted, "funding")) == 1
        orders = store.orders(engine.session.id)
        shorts = [o for o in orders if o.intent == "enter_short" and o.status == OrderStatus.FILLED]
        covers = [o for o in orders if o.intent == "exit_short" and o.status == OrderStatus.FILLED]
        assert len(shorts) >= 1 and len(covers) >= 1
        venue = {o["clientOrderId"]: o for o in server.book}
        short, cover = venue[shorts[0].client_order_id], venue[covers[-1].client_order_id]
        assert (short["side"], short["reduceOnly"], short["status"]) == ("SELL", False, "FILLED")
        assert (cover["side"], cover["reduceOnly"], cover["status"]) == ("BUY", True, "FILLED")
        assert short["executedQty"] == cover["executedQty"] == f"{qty:.3f}"  # the whole short covered
        assert server.positions[VENUE_SYMBOL].amount == pytest.approx(_held(restarted))  # (a reversal: long)
        fills = store.fills(engine.session.id)
        assert len(fills) == sum(o.status == OrderStatus.FILLED for o in orders) >= 2
        assert all(f.price == PRICE for f in fills)
        # every trade at one price, each moving cash by -side x qty x price - fee: the cash is the start
        # and the funding, less the venue's commissions and what the position still held cost
        expected = init_cash + received - sum(f.fee for f in fills) - PRICE * _held(restarted)
        assert restarted.cash == pytest.approx(expected, rel=1e-9)
