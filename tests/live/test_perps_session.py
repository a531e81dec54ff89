"""A live session on USDⓈ-M perpetuals: the runner's ``make_broker`` gives ``binanceusdm`` the
perpetuals broker with each symbol's leverage and margin mode, and funding the loopback venue
pays is booked once into the session's cash (a restart included), audited, with its row."""

from __future__ import annotations

import asyncio

import pytest
from futures_account import Position
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
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings

SYMBOL = "BTC-USDT"
PERPS = {SYMBOL: PerpInstrument(leverage=3, margin_mode="isolated")}


def _world(trained_world: World, tmp_path, server: BinanceUsdmLoopback) -> Settings:
    """The bundled binance 1m BTC candles as the perpetual's series, in a lake of this test's own."""
    lake = CandleLake(tmp_path / "lake")
    source = CandleLake(trained_world.settings.lake_dir).read(SeriesKey("binance", "BTC-BUSD", "1m"))
    lake.write(SeriesKey("binanceusdm", SYMBOL, "1m"), source)
    return Settings(
        TRADELOOP_DATA_DIR=str(tmp_path),
        TRADELOOP_REGISTRY_DIR=str(trained_world.settings.registry_dir),
        DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}",
        TRADELOOP_EXCHANGE_API_KEY=server.api_key,
        TRADELOOP_EXCHANGE_SECRET=server.secret,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
    )


def _engine(settings: Settings, config: SessionConfig) -> LiveEngine:
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, config)
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


async def _bars(engine: LiveEngine, settings: Settings, config: SessionConfig, n: int) -> None:
    feed = replay_feed(settings, config)
    done = 0
    async for batch in feed.batches(after_ts=engine.store.session(config.name).last_bar_ts):
        if engine.window.is_empty():
            engine.window = feed.history(before_ts=batch.ts, bars=400)
        await engine.on_batch(batch)
        done += 1
        if done >= n:
            return


def test_funding_is_booked_once_into_cash_and_the_instruments_pnl(trained_world: World, tmp_path) -> None:
    with BinanceUsdmLoopback(prices={"BTCUSDT": 17_200.0}, balances={"USDT": 10_000.0}) as server:
        settings = _world(trained_world, tmp_path, server)
        config = SessionConfig(
            name="perp", exchange="binanceusdm", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START,
            allow_in_sample=True, perps=PERPS,
        )  # fmt: skip
        engine = _engine(settings, config)
        assert isinstance(engine.broker, PerpsBroker)
        # a position the venue holds (opened before this session's funding window) pays funding
        server.margin_type["BTCUSDT"] = "ISOLATED"
        server.positions["BTCUSDT"] = Position(amount=-0.2, entry=17_000.0, isolated_wallet=0.2 * 17_000.0 / 3)
        [paid] = server.pay_funding("BTCUSDT", 0.0001, ts=START)
        received = float(paid["income"])
        assert received == pytest.approx(0.2 * 17_200.0 * 0.0001, rel=1e-6)  # a short receives positive funding

        async def scenario() -> None:
            try:
                cash0 = engine.cash
                await _bars(engine, settings, config, 3)
                assert engine.cash - cash0 == pytest.approx(received, rel=1e-9)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        store = engine.store
        [flow] = store.frame(CashFlow, engine.session.id).to_dicts()
        assert flow["kind"] == "funding" and flow["amount"] == pytest.approx(received)
        assert store.session("perp").cash == pytest.approx(engine.cash)
        # the venue's liquidation price of the short, written to the position's row: Binance's isolated
        # one-way formula (WB + cum - side*Q*EP) / (Q*mmr - side*Q), BTCUSDT's first bracket mmr 0.4%, cum 0,
        # the isolated wallet holding the funding received
        wallet = 0.2 * 17_000.0 / 3 + received
        expected = (wallet + 0.0 + 0.2 * 17_000.0) / (0.2 * 0.004 + 0.2)
        [row] = store.frame(PositionRow, engine.session.id).to_dicts()
        assert row["liquidation_price"] == pytest.approx(expected, rel=1e-6)

        restarted = _engine(settings, config)  # the same payment after a restart is not booked again

        async def again() -> None:
            try:
                before = restarted.cash
                await _bars(restarted, settings, config, 2)
                assert restarted.cash == pytest.approx(before)
            finally:
                await restarted.broker.close()

        asyncio.run(again())
        assert len(store.frame(CashFlow, engine.session.id)) == 1
        assert [a.event for a in store.audit_log(engine.session.id)].count("funding") == 1
