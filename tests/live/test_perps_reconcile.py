"""A perpetuals session's positions reconciled with the venue's positionRisk at run time, through
the real ccxt ``binanceusdm`` client and the loopback fapi venue: positions that agree need
nothing; a position the venue changed behind the engine's back (a close on the website) puts the
session in reduce-only until ``tradeloop live ack``; a position the account held before the
session started is the account's own (a baseline), never a drift; a venue that cannot be asked
is audited and asked again."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from futures_account import Position
from futures_exchange_server import BinanceUsdmLoopback
from loopback_http import binance_error_classes

from live.brokers.ccxt_broker import CcxtBrokerConfig
from live.brokers.perps import PerpInstrument, PerpsBroker
from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, open_session, replay_feed
from tests.live.conftest import World
from tests.live.venue_session import START, tradeloop
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.exchanges import make_exchange
from tradeloop.ops import OpsStore
from tradeloop.registry import Lineage, ModelRegistry
from tradeloop.settings import Settings

SYMBOL, VENUE_SYMBOL = "BTC-USDT", "BTCUSDT"
PERPS = {SYMBOL: PerpInstrument(leverage=3, margin_mode="isolated")}
FAST = CcxtBrokerConfig(recv_window_s=0.2, visibility_window_s=0.5, query_interval_s=0.05, read_attempts=2)


def settings_for(world: World, tmp_path, server: BinanceUsdmLoopback) -> Settings:
    """The bundled binance 1m BTC candles as the perpetual's series, in a lake of this test's own."""
    lake = CandleLake(tmp_path / "lake")
    source = CandleLake(world.settings.lake_dir).read(SeriesKey("binance", "BTC-BUSD", "1m"))
    lake.write(SeriesKey("binanceusdm", SYMBOL, "1m"), source)
    registry = ModelRegistry(tmp_path / "registry")
    registry.store.put(world.settings.registry_dir / "artifacts" / world.champion)
    registry.promote("sma_cross", world.champion, lineage=Lineage(run_id="test"))
    return Settings(
        TRADELOOP_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'ops.db'}",
        TRADELOOP_EXCHANGE_API_KEY=server.api_key,
        TRADELOOP_EXCHANGE_SECRET=server.secret,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
    )


def config_of(name: str) -> SessionConfig:
    return SessionConfig(
        name=name, exchange="binanceusdm", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START,
        allow_in_sample=True, perps=PERPS,
    )  # fmt: skip


def perps_engine(settings: Settings, server: BinanceUsdmLoopback, name: str, *, every_bars: int) -> LiveEngine:
    """What the runner builds for a perpetuals session, with the broker in ``FAST`` windows."""
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, config_of(name))
    client = make_exchange(
        "binanceusdm",
        timeout_s=2.0,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": server.secret},
        allow_insecure_loopback=True,
    )
    client.enableRateLimit = False
    return LiveEngine(
        store=store,
        session=session,
        broker=PerpsBroker(binance_error_classes(client), instruments=PERPS, config=FAST),
        bus=make_bus(None),
        slot=ModelSlot.for_session(registry, session),
        backtest=backtest_config(session),
        config=EngineConfig(venue_check_every_bars=every_bars, publish=False),
    )


async def run_bars(engine: LiveEngine, settings: Settings, *, until, limit: int = 1000) -> int:
    """Feed the replay bar by bar until ``until(engine)``; fails when ``limit`` bars did not get there."""
    feed = replay_feed(settings, config_of(engine.session.name))
    done = 0
    async for batch in feed.batches(after_ts=engine.store.session(engine.session.name).last_bar_ts):
        if engine.window.is_empty():
            engine.window = feed.history(before_ts=batch.ts, bars=400)
        await engine.on_batch(batch)
        done += 1
        if until(engine):
            return done
        if done >= limit:
            break
    audit = Counter(e.event for e in engine.store.audit_log(engine.session.id))
    raise AssertionError(f"not reached within {done} bars; audit rows: {dict(audit)}")


def events(engine: LiveEngine, name: str) -> list:
    return [e for e in engine.store.audit_log(engine.session.id) if e.event == name]


def held(engine: LiveEngine) -> float:
    return engine.positions.get(SYMBOL, 0.0)


def test_positions_that_agree_with_the_venue_need_no_ack(trained_world: World, tmp_path) -> None:
    """The session opens and closes a long with a check at every bar: the baseline is recorded
    once (the account held nothing else), each check agrees, nothing waits for an ack."""
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: 17_200.0}, balances={"USDT": 10_000.0}) as server:
        settings = settings_for(trained_world, tmp_path, server)
        engine = perps_engine(settings, server, "agree", every_bars=1)
        venue_while_held: list[float] = []

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, until=lambda e: held(e) > 0)
                await run_bars(engine, settings, until=lambda e: True, limit=1)  # a check while holding
                venue_while_held.append(server.positions[VENUE_SYMBOL].amount)
                await run_bars(engine, settings, until=lambda e: held(e) == 0.0)
                await run_bars(engine, settings, until=lambda e: True, limit=1)  # and once flat again
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        assert venue_while_held[0] > 0  # the check compared a real position
        assert [e.detail for e in events(engine, "position_baseline")] == [{SYMBOL: 0.0}]
        assert not events(engine, "position_drift") and not events(engine, "venue_check_failed")
        assert engine.store.session("agree").needs_ack is None
        assert server.positions[VENUE_SYMBOL].amount == 0.0


def test_a_position_closed_behind_the_engines_back_means_reduce_only_until_ack(trained_world: World, tmp_path) -> None:
    """While the session holds a long, the operator closes it on the website. The next check
    writes `position_drift` with the numbers and sets needs_ack; the session's exit, reduce-only,
    is refused by the venue (nothing to reduce). The operator reopens the long by hand: the exit
    goes through, the next entry is refused until `tradeloop live ack`, then entries resume."""
    name = "drift"
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: 17_200.0}, balances={"USDT": 10_000.0}) as server:
        settings = settings_for(trained_world, tmp_path, server)
        engine = perps_engine(settings, server, name, every_bars=1)
        session_qty: list[float] = []

        def orders(side: str) -> list:
            return [o for o in engine.store.orders(engine.session.id) if o.side == side]

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, until=lambda e: held(e) > 0)
                await run_bars(engine, settings, until=lambda e: True, limit=2)
                assert not events(engine, "position_drift")
                session_qty.append(held(engine))
                server.manual_order(VENUE_SYMBOL, "SELL", held(engine))  # closed on the website
                assert server.positions[VENUE_SYMBOL].amount == 0.0
                await run_bars(engine, settings, until=lambda e: e.store.session(name).needs_ack, limit=1)
                listing = tradeloop("live", "sessions", settings=settings)
                assert listing.returncode == 0 and "needs ack" in listing.stdout and "position drift" in listing.stdout
                await run_bars(engine, settings, until=lambda e: any(o.status == "rejected" for o in orders("sell")))
                server.manual_order(VENUE_SYMBOL, "BUY", session_qty[0], reduce_only=False)  # the operator reopens it
                await run_bars(engine, settings, until=lambda e: held(e) == 0.0)
                assert server.positions[VENUE_SYMBOL].amount == 0.0  # the session's exit closed it
                buys = len(orders("buy"))
                await run_bars(engine, settings, until=lambda e: events(e, "entry_refused"))
                assert len(orders("buy")) == buys  # the entry was refused, not sent
                acked = tradeloop("live", "ack", name, settings=settings)
                assert acked.returncode == 0, acked.stderr
                await run_bars(engine, settings, until=lambda e: held(e) > 0)
                assert len(orders("buy")) == buys + 1 and orders("buy")[-1].status == "filled"
                await run_bars(engine, settings, until=lambda e: True, limit=2)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        [drift] = events(engine, "position_drift")
        qty = session_qty[0]
        assert drift.detail[SYMBOL] == pytest.approx(
            {"venue": 0.0, "session": qty, "baseline": 0.0, "off_by": -qty, "tolerance": 0.001}
        )  # BTCUSDT's amount step in the exchangeInfo capture: stepSize 0.001
        [refused] = events(engine, "entry_refused")
        assert refused.detail["symbol"] == SYMBOL and "position drift" in refused.detail["reason"]
        [ack] = events(engine, "session_acknowledged")
        reason = ack.detail["needs_ack"]
        assert reason.startswith(f"position drift: {SYMBOL}: venue 0, session {qty:g}, off by {-qty:+g}")
        assert f"tradeloop live ack {name}" in reason
        assert [e.detail for e in events(engine, "position_baseline")] == [{SYMBOL: 0.0}, {SYMBOL: 0.0}]
        assert engine.store.session(name).needs_ack is None
        assert server.positions[VENUE_SYMBOL].amount == pytest.approx(held(engine))


def test_a_position_held_before_the_session_is_a_baseline_not_a_drift(trained_world: World, tmp_path) -> None:
    """The account already holds a long of 0.2 BTC (opened by hand) when the session starts: it
    is the account's own position, recorded as the baseline; the session's long on top of it
    (one-way mode: the venue shows the sum) and its close agree at every check."""
    name = "shared"
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: 17_200.0}, balances={"USDT": 10_000.0}) as server:
        server.margin_type[VENUE_SYMBOL] = "ISOLATED"  # what the session asks: no change refused (-4048)
        server.positions[VENUE_SYMBOL] = Position(amount=0.2, entry=17_000.0, isolated_wallet=0.2 * 17_000.0 / 3)
        settings = settings_for(trained_world, tmp_path, server)
        engine = perps_engine(settings, server, name, every_bars=1)
        venue_while_held: list[tuple[float, float]] = []

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, until=lambda e: held(e) > 0)
                await run_bars(engine, settings, until=lambda e: True, limit=2)
                venue_while_held.append((server.positions[VENUE_SYMBOL].amount, held(engine)))
                await run_bars(engine, settings, until=lambda e: held(e) == 0.0)
                await run_bars(engine, settings, until=lambda e: True, limit=2)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        venue, session = venue_while_held[0]
        assert venue == pytest.approx(0.2 + session) and session > 0
        assert [e.detail for e in events(engine, "position_baseline")] == [{SYMBOL: pytest.approx(0.2)}]
        assert not events(engine, "position_drift") and not events(engine, "entry_refused")
        assert engine.store.session(name).needs_ack is None
        assert server.positions[VENUE_SYMBOL].amount == pytest.approx(0.2)


def test_positions_unreadable_are_audited_and_asked_again(trained_world: World, tmp_path) -> None:
    """positionRisk answers 503: each check writes `venue_check_failed` and the engine goes on
    (no baseline, no ack); once it answers, the next check records the baseline."""
    name = "down"
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: 17_200.0}, balances={"USDT": 10_000.0}) as server:
        settings = settings_for(trained_world, tmp_path, server)
        engine = perps_engine(settings, server, name, every_bars=1)
        server.down_paths |= {"/fapi/v2/positionRisk", "/fapi/v3/positionRisk"}

        async def scenario() -> None:
            try:
                assert await run_bars(engine, settings, until=lambda e: e.bars == 3) == 3
                assert len(events(engine, "venue_check_failed")) == 3 and not events(engine, "position_baseline")
                server.down_paths.clear()
                await run_bars(engine, settings, until=lambda e: True, limit=1)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        failed = events(engine, "venue_check_failed")
        assert len(failed) == 3 and all(
            "503" in e.detail["error"] or "unavailable" in e.detail["error"].lower() for e in failed
        )
        assert [e.detail for e in events(engine, "position_baseline")] == [{SYMBOL: 0.0}]
        assert engine.store.session(name).needs_ack is None


def test_a_drift_while_an_ack_is_pending_is_added_to_its_reason_once(trained_world: World, tmp_path) -> None:
    """The session already waits for an ack (a kill switch, say) when its position is closed on
    the website: one ack clears both, so the reason the operator reads names the drift, once."""
    name = "pending"
    with BinanceUsdmLoopback(prices={VENUE_SYMBOL: 17_200.0}, balances={"USDT": 10_000.0}) as server:
        settings = settings_for(trained_world, tmp_path, server)
        engine = perps_engine(settings, server, name, every_bars=1)

        async def scenario() -> None:
            try:
                await run_bars(engine, settings, until=lambda e: held(e) > 0)
                with engine.store.transaction() as db:
                    OpsStore.require_ack(db, engine.session.id, "kill switch: drawdown", event="test_ack", detail={})
                server.manual_order(VENUE_SYMBOL, "SELL", held(engine))
                await run_bars(engine, settings, until=lambda e: True, limit=3)
            finally:
                await engine.broker.close()

        asyncio.run(scenario())
        reason = engine.store.session(name).needs_ack
        assert reason == f"kill switch: drawdown; and position drift on {SYMBOL} (audit log)"
        [drift] = events(engine, "position_drift")
        assert drift.detail[SYMBOL]["venue"] == 0.0 and drift.detail[SYMBOL]["session"] > 0
