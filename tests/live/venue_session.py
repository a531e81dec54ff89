"""A live session on the loopback Binance venue, built from the runner's own pieces, with the
real ccxt broker in small windows so tests stay fast; and the ``tradeloop`` CLI as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from exchange_server import BinanceLoopback

from live.brokers.ccxt_broker import CcxtBroker, CcxtBrokerConfig
from live.bus import make_bus
from live.engine import EngineConfig, LiveEngine
from live.models import ModelSlot
from live.runner import SessionConfig, backtest_config, open_session, replay_feed
from tests.live.conftest import World
from tradeloop.data.exchanges import make_exchange
from tradeloop.ops import OpsStore
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SYMBOL = "BTC-BUSD"  # the bundled binance 1m sample
START = 1670889600000 + 400 * 60_000  # 400 bars of warm-up
FAST = CcxtBrokerConfig(recv_window_s=0.2, visibility_window_s=2.5, query_interval_s=0.1, read_attempts=2)


def venue_settings(world: World, server: BinanceLoopback, database_url: str) -> Settings:
    return Settings(
        TRADELOOP_DATA_DIR=str(world.root),
        DATABASE_URL=database_url,
        TRADELOOP_EXCHANGE_API_KEY=server.api_key,
        TRADELOOP_EXCHANGE_SECRET=server.secret,
        TRADELOOP_EXCHANGE_API_URL=server.url,
        TRADELOOP_ALLOW_INSECURE_LOOPBACK="true",
    )


def session_config(name: str) -> SessionConfig:
    """The 2022 binance sample lies inside the shared champion's training years: in-sample, allowed."""
    return SessionConfig(
        name=name, exchange="binance", symbols=(SYMBOL,), timeframe="1m", mode="live", start=START, allow_in_sample=True
    )


def broker_on(server: BinanceLoopback, *, config: CcxtBrokerConfig = FAST) -> CcxtBroker:
    exchange = make_exchange(
        "binance",
        timeout_s=1.0,
        api_url=server.url,
        asynchronous=True,
        credentials={"apiKey": server.api_key, "secret": server.secret},
        allow_insecure_loopback=True,
    )
    exchange.enableRateLimit = False  # the loopback has no limit to respect; keeps bar-by-bar tests fast
    return CcxtBroker(exchange, config=config)


def venue_engine(settings: Settings, server: BinanceLoopback, name: str, *, every_bars: int = 10) -> LiveEngine:
    """What ``live.runner.build_engine`` builds for a live session, with the broker in ``FAST``
    windows and the in-process bus."""
    store = OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, session_config(name))
    return LiveEngine(
        store=store,
        session=session,
        broker=broker_on(server),
        bus=make_bus(None),
        slot=ModelSlot.for_session(registry, session),
        backtest=backtest_config(session),
        config=EngineConfig(venue_check_every_bars=every_bars, publish=False),
    )


async def run_bars(engine: LiveEngine, settings: Settings, name: str, *, until, limit: int = 1040) -> int:
    """Feed the replay bar by bar (after the session's last bar) until ``until(engine)`` is true;
    returns the bars fed. Fails when ``limit`` bars did not get there."""
    feed = replay_feed(settings, session_config(name))
    done = 0
    async for batch in feed.batches(after_ts=engine.store.session(name).last_bar_ts):
        if engine.window.is_empty():
            engine.window = feed.history(before_ts=batch.ts, bars=400)
        await engine.on_batch(batch)
        done += 1
        if until(engine):
            return done
        if done >= limit:
            break
    raise AssertionError(f"not reached within {done} bars")


def tradeloop(*args: str, settings: Settings, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in its own process, on the session's database (``env``: more variables)."""
    env = {
        **os.environ,
        **(env or {}),
        "TRADELOOP_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.effective_database_url,
        "COLUMNS": "200",
        "TRADELOOP_ACTOR": "operator-ann",
    }
    return subprocess.run(
        [sys.executable, "-m", "tradeloop", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
