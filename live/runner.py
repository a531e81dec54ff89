"""Start or resume a trading session: settings -> store, registry, feed, broker, bus, engine.

Before any bar: DATABASE_URL and REDIS_URL are checked (connect + ``SELECT 1``, PING; a bad
one is a ConfigError, exit 2, naming the variable with the password masked), a live session's
keys are checked for every venue it trades on (``live.session_brokers.check_venue_keys``: a venue
without keys is a ConfigError, exit 2, naming the variables to set), a replay's series must have
candles in the lake (else DataError, exit 3, before any session row is written), the engine
takes its locks (``live.locks``: one engine per session and per exchange account, one account
per venue of a session on several venues; a second one is refused naming the holder), and a
new session whose first bar lies at or before its champion's training end is refused unless
``allow_in_sample`` (``tradeloop.ops.in_sample``: then it is marked in-sample). A new session's
row is ``tradeloop.ops.session_spec.create_session``'s, the one ``POST /sessions`` writes too.

A session's symbols may span venues (``live.venues``: ``BTC-BUSD`` on its exchange,
``okx:BTC-USDT`` on OKX). Live, it trades through one broker per venue behind a router, each
with its venue's keys (``live.session_brokers``, ``live.venue_keys``), fed by one ccxt feed per
venue merged by bar time (``live.session_feeds``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from live.bus import check_redis, make_bus
from live.engine import EngineConfig, LiveEngine, check_window
from live.feeds.base import Feed
from live.feeds.ccxt_feed import CcxtFeed
from live.feeds.replay import ReplayFeed
from live.locks import EngineLocks, session_lock_key
from live.marketdata.bus_feed import BusFeed
from live.models import ModelSlot
from live.session_brokers import (
    check_live_venues,
    check_venue_keys,
    live_accesses,
    make_broker,
    session_broker,
    session_secret,
    take_account_locks,
)
from live.session_config import SessionConfig, backtest_config
from live.session_feeds import bus_feed, ccxt_feed, check_replay_data, replay_feed
from live.venue_feed import VenueLiveFeed, VenueReplay
from tradeloop.errors import SessionStateError
from tradeloop.logs import bind_ids
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.database import check_reachable
from tradeloop.ops.session_spec import create_session
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings
from tradeloop.strategies import get_strategy

__all__ = [
    "SessionConfig",
    "backtest_config",
    "build_engine",
    "bus_feed",
    "ccxt_feed",
    "check_live_keys",
    "check_live_venues",
    "check_replay_data",
    "make_broker",
    "open_session",
    "replay_feed",
    "run_session",
    "session_secret",
]

log = logging.getLogger(__name__)


def open_session(
    store: OpsStore, registry: ModelRegistry, config: SessionConfig, *, first_bar_ms: int | None = None
) -> TradingSession:
    """Resume the session called ``config.name`` (it keeps its ``in_sample`` flag), or create
    it from the champion's costs; a new one starting (``first_bar_ms``) at or before the
    champion's training end is refused unless ``config.allow_in_sample`` (``tradeloop.ops.session_spec``)."""
    try:
        session = store.session(config.name)
    except SessionStateError:
        session = None
    if session is not None:
        if session.status == "stopped":
            raise SessionStateError(f"session {config.name!r} was stopped; start a new one with another --name")
        if tuple(session.symbols) != tuple(config.symbols) or session.strategy != config.strategy:
            raise SessionStateError(
                f"session {config.name!r} trades {session.strategy} on {session.symbols}, not {config.strategy} on "
                f"{list(config.symbols)}; resume it with the same options or pick another --name"
            )
        return session
    return create_session(store, registry, config, first_bar_ms=first_bar_ms)


def build_engine(
    settings: Settings,
    config: SessionConfig,
    *,
    store: OpsStore | None = None,
    locks: EngineLocks | None = None,
    engine_config: EngineConfig | None = None,
    first_bar_ms: int | None = None,
) -> LiveEngine:
    """The engine of ``config.name`` (created or resumed; ``first_bar_ms``: see ``open_session``).
    With ``locks`` (holding the session lock already), a live session also takes the lock of
    each venue account it trades (one per venue: ``live.session_brokers``)."""
    check_window(get_strategy(config.strategy), config.window_bars)  # before any session row is written
    store = store or OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, config, first_bar_ms=first_bar_ms)
    stored = session.credential_id is not None
    check_live_venues(session.mode, session.exchange, session.symbols, name=session.name, stored_credential=stored)
    secret = session_secret(settings, store, session)
    backtest = backtest_config(session)
    if locks is not None and session.mode == "live":  # each venue's account (live.session_brokers)
        take_account_locks(
            locks, live_accesses(settings, session.exchange, session.symbols, secret=secret), mode="live"
        )
    broker = session_broker(settings, session, backtest=backtest, perps=config.perps, secret=secret)
    slot = ModelSlot.for_session(registry, session, window_bars=config.window_bars, store=store)
    tuning = (engine_config or EngineConfig()).model_copy(update={"window_bars": config.window_bars})
    return LiveEngine(
        store=store,
        session=session,
        broker=broker,
        slot=slot,
        backtest=backtest,
        config=tuning,
        bus=make_bus(settings.redis_url, prefix=settings.redis_prefix),
        locks=locks,
    )


async def check_live_keys(settings: Settings, config: SessionConfig) -> None:
    """Every venue's keys and URL of a live session, before any data
    (``live.session_brokers.check_venue_keys``; a resumed session by its stored row)."""
    await check_venue_keys(
        settings, config.name, mode=config.mode, exchange=config.exchange, symbols=tuple(config.symbols)
    )


async def check_services(settings: Settings, *, timeout_s: float = 5.0) -> None:
    """Connect to DATABASE_URL (``SELECT 1``) and PING REDIS_URL, each within ``timeout_s``."""
    check_reachable(settings.effective_database_url, timeout_s=timeout_s)
    if settings.redis_url:
        await check_redis(settings.redis_url, timeout_s=timeout_s)


async def run_session(
    settings: Settings,
    config: SessionConfig,
    *,
    max_bars: int | None = None,
    stop: asyncio.Event | None = None,
    engine_config: EngineConfig | None = None,
) -> LiveEngine:
    """Check the services and the data, take the locks, and trade (see the module rules). Every
    log record of this task from here on carries ``session`` (``tradeloop.logs``)."""
    bind_ids(session=config.name)
    await check_services(settings)
    await check_live_keys(settings, config)  # keys and exchange URLs before the data (exit 2 before 3)
    feeds: dict[str, Callable[[Settings, SessionConfig], Feed]] = {
        "replay": replay_feed,
        "ccxt": ccxt_feed,
        "bus": bus_feed,
    }
    feed = feeds[config.feed](settings, config)
    try:
        first_bar_ms = None  # ccxt and bus: now
        if isinstance(feed, ReplayFeed | VenueReplay):
            first_bar_ms = check_replay_data(feed, config)
        store = OpsStore.open(settings.effective_database_url)
        locks = EngineLocks(store)
        try:
            locks.acquire(session_lock_key(config.name), what=f"session {config.name!r}")
            engine = build_engine(
                settings, config, store=store, locks=locks, engine_config=engine_config, first_bar_ms=first_bar_ms
            )
        except BaseException:
            locks.release()
            raise
        if isinstance(feed, CcxtFeed | VenueLiveFeed | BusFeed):  # a stale feed goes to the audit log (and the log)
            feed.on_stale = lambda symbol, age: engine.report("feed_stale", symbol=symbol, seconds=round(age, 1))
        if isinstance(feed, ReplayFeed | VenueReplay):  # a bad stored bar is skipped, never traded: audit it
            feed.on_rejected = lambda symbol, ts, rule: engine.report("candle_skipped", symbol=symbol, ts=ts, rule=rule)
        try:
            await engine.run(feed, max_bars=max_bars, stop=stop)
        finally:
            locks.release()
            await engine.bus.close()
            await engine.broker.close()
    finally:
        if isinstance(feed, CcxtFeed | VenueLiveFeed | BusFeed):
            await feed.close()
    return engine
