"""Start or resume a trading session: settings -> store, registry, feed, broker, bus, engine.

Before any bar: DATABASE_URL and REDIS_URL are checked (connect + ``SELECT 1``, PING; a bad
one is a ConfigError, exit 2, naming the variable with the password masked), a replay's
series must have candles in the lake (else DataError, exit 3, before any session row is
written), the engine takes its locks (``live.locks``: one engine per session and per
exchange account; a second one is refused naming the holder), and a new session whose first
bar lies at or before its champion's training end is refused unless ``allow_in_sample``
(``tradeloop.ops.in_sample``: then it is marked in-sample). A new session's row is
``tradeloop.ops.session_spec.create_session``'s, the one ``POST /sessions`` writes too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from pydantic import Field

from live.brokers.base import Broker
from live.brokers.ccxt_broker import CcxtBroker
from live.brokers.paper import PaperBroker
from live.brokers.perps import PerpInstrument, PerpsBroker
from live.bus import RedisBus, check_redis, make_bus
from live.engine import EngineConfig, LiveEngine, check_window
from live.entries import PERPETUAL_VENUES
from live.feeds.base import Feed
from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from live.feeds.replay import ReplayFeed
from live.locks import EngineLocks, account_lock_key, session_lock_key
from live.marketdata.bus_feed import BusFeed
from live.models import ModelSlot
from live.venue_feed import VenueReplay
from live.venues import venues_of
from tradeloop.backtest import BacktestConfig
from tradeloop.data import CandleLake, SeriesKey, earliest
from tradeloop.data.exchanges import make_exchange
from tradeloop.errors import ConfigError, DataError, SessionStateError
from tradeloop.identity.credentials import CredentialStore, vault_of
from tradeloop.identity.vault import ExchangeSecret
from tradeloop.logs import bind_ids
from tradeloop.ops import OpsStore, TradingSession
from tradeloop.ops.database import check_reachable
from tradeloop.ops.session_spec import SessionSpec, create_session
from tradeloop.registry import ModelRegistry
from tradeloop.settings import Settings
from tradeloop.strategies import get_strategy

log = logging.getLogger(__name__)


class SessionConfig(SessionSpec):
    """A trading session's options (``tradeloop live run --help`` lists them): what a new
    session is stored with (``SessionSpec``) and how the engine runs it."""

    speed: float = Field(default=0.0, ge=0.0)
    window_bars: int = Field(default=400, ge=10)
    follow_s: float | None = Field(default=None, gt=0, description="after the replay, poll the lake this often")
    feed_stale_after_s: float = Field(default=180.0, gt=0, description="ccxt feed: report a symbol stale after this")
    perps: dict[str, PerpInstrument] = Field(
        default_factory=dict,
        description="leverage and margin mode per symbol of a perpetuals venue (binanceusdm), set on the venue "
        "before the symbol's first order, e.g. {'BTC-USDT': PerpInstrument(leverage=3, margin_mode='isolated')}",
    )


def backtest_config(session: TradingSession) -> BacktestConfig:
    return BacktestConfig(**session.config)


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
    With ``locks`` (holding the session lock already), a live session also takes its exchange
    account's lock."""
    check_window(get_strategy(config.strategy), config.window_bars)  # before any session row is written
    store = store or OpsStore.open(settings.effective_database_url)
    registry = ModelRegistry(settings.registry_dir)
    session = open_session(store, registry, config, first_bar_ms=first_bar_ms)
    check_live_venues(session.mode, session.exchange, session.symbols)
    secret = session_secret(settings, store, session)
    if locks is not None:
        api_key = secret.api_key if secret is not None else None
        if secret is None and settings.exchange_api_key is not None:
            api_key = settings.exchange_api_key.get_secret_value()
        account = account_lock_key(mode=session.mode, venue=session.exchange, api_key=api_key)
        if account is not None:
            whose = "its stored credential" if secret is not None else "TRADELOOP_EXCHANGE_API_KEY"
            locks.acquire(account, what=f"the {session.exchange} account of {whose}")
    backtest = backtest_config(session)
    broker = make_broker(
        settings, session.mode, exchange=session.exchange, backtest=backtest, perps=config.perps, secret=secret
    )
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


def session_secret(settings: Settings, store: OpsStore, session: TradingSession) -> ExchangeSecret | None:
    """The stored exchange credential a live session made through the API trades with
    (``sessions.credential_id``, decrypted with ``TRADELOOP_ENCRYPTION_KEY``); None for a paper
    session or one on the engine host's own keys."""
    if session.mode != "live" or session.credential_id is None:
        return None
    credentials = CredentialStore(store)
    info = credentials.info(session.credential_id)
    if info.exchange != session.exchange or (session.owner_id is not None and info.user_id != session.owner_id):
        raise ConfigError(
            f"session {session.name!r} trades on {session.exchange} for user {session.owner_id}, but its stored "
            f"credential {info.name!r} is user {info.user_id}'s {info.exchange} account; stop the session and make a "
            "new one with a credential of its owner for its exchange"
        )
    return credentials.secret(session.credential_id, vault=vault_of(settings))


async def check_live_keys(settings: Settings, config: SessionConfig) -> None:
    """A live session's keys and venue URL, checked before any data: a resumed session's by its
    stored row (its mode, exchange, symbols and stored credential: ``session_secret``), since a
    resume names no ``--mode`` (``api.session_options.run_command``); a new session's by ``config``.

    Raises
    ------
    ConfigError
        The session trades live and has no usable keys (no stored credential or host keys, an
        undecryptable credential, a venue URL refused), or its symbols span several venues.
    """
    store = OpsStore.open(settings.effective_database_url)
    try:
        try:
            session: TradingSession | None = store.session(config.name)
        except SessionStateError:
            session = None
        if session is None:
            mode, exchange, symbols, secret = config.mode, config.exchange, tuple(config.symbols), None
        else:
            mode, exchange, symbols = session.mode, session.exchange, tuple(session.symbols)
            secret = session_secret(settings, store, session)
    finally:
        store.close()
    if mode != "live":
        return
    check_live_venues(mode, exchange, symbols)
    await make_broker(settings, "live", exchange=exchange, backtest=BacktestConfig(), secret=secret).close()


def check_live_venues(mode: str, exchange: str, symbols: tuple[str, ...] | list[str]) -> None:
    """A live session trades on one venue's account: the runner builds one broker with one set
    of keys (``live.brokers.router`` routes several venues' brokers once each has its keys)."""
    venues = sorted(venues_of(exchange, symbols))
    if mode == "live" and len(venues) > 1:
        raise ConfigError(
            f"a live session trades one venue's account; these symbols are on {venues}: trade them in one live "
            "session per venue, or replay them together on paper (--mode paper)"
        )


def make_broker(
    settings: Settings,
    mode: str,
    *,
    exchange: str,
    backtest: BacktestConfig,
    perps: Mapping[str, PerpInstrument] | None = None,
    secret: ExchangeSecret | None = None,
) -> Broker:
    """Paper: the backtest's fill rules. Live: the venue through ccxt, with ``secret`` (a
    session's stored credential: ``session_secret``) or else the engine host's exchange keys; a
    perpetuals venue (``PERPETUAL_VENUES``) gets the perpetuals broker with each instrument's
    leverage and margin mode (``perps``; an instrument without one is refused its entries)."""
    if mode == "paper":
        return PaperBroker.of(backtest)
    if secret is not None:
        credentials = {"apiKey": secret.api_key, "secret": secret.secret, "password": secret.password or ""}
    elif settings.exchange_api_key is None or settings.exchange_secret is None:
        raise ConfigError(
            "mode='live' trades real money and needs TRADELOOP_EXCHANGE_API_KEY and "
            "TRADELOOP_EXCHANGE_SECRET; set them (see .env.example) or use --mode paper"
        )
    else:
        credentials = {
            "apiKey": settings.exchange_api_key.get_secret_value(),
            "secret": settings.exchange_secret.get_secret_value(),
            "password": settings.exchange_password.get_secret_value() if settings.exchange_password else "",
        }
    client = make_exchange(
        exchange,
        timeout_s=settings.http_timeout_s,
        api_url=settings.exchange_api_url,
        credentials=credentials,
        asynchronous=True,
        allow_insecure_loopback=settings.allow_insecure_loopback,
    )
    if exchange in PERPETUAL_VENUES:
        return PerpsBroker(client, instruments=dict(perps or {}))
    return CcxtBroker(client)


def replay_feed(settings: Settings, config: SessionConfig) -> ReplayFeed | VenueReplay:
    """The lake's candles of the session's symbols; symbols on several venues (``venue:SYMBOL``,
    ``live.venues``) are replayed as one universe (``live.venue_feed``)."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    several = len(venues_of(config.exchange, config.symbols)) > 1
    kind = VenueReplay if several else ReplayFeed
    return kind(
        lake,
        exchange=config.exchange,
        symbols=list(config.symbols),
        timeframe=config.timeframe,
        speed=config.speed,
        start=config.start,
        end=config.end,
        follow_s=config.follow_s,
    )


def ccxt_feed(settings: Settings, config: SessionConfig) -> CcxtFeed:
    """Closed candles from the exchange (WebSocket, REST fallback); warm-up from the lake."""
    client = make_exchange(
        config.exchange,
        timeout_s=settings.http_timeout_s,
        api_url=settings.exchange_api_url,
        websocket=True,
        ws_url=settings.exchange_ws_url,
    )
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    return CcxtFeed(
        client,
        lake=lake,
        symbols=list(config.symbols),
        timeframe=config.timeframe,
        config=CcxtFeedConfig(stale_after_s=config.feed_stale_after_s),
    )


async def check_services(settings: Settings, *, timeout_s: float = 5.0) -> None:
    """Connect to DATABASE_URL (``SELECT 1``) and PING REDIS_URL, each within ``timeout_s``."""
    check_reachable(settings.effective_database_url, timeout_s=timeout_s)
    if settings.redis_url:
        await check_redis(settings.redis_url, timeout_s=timeout_s)


def bus_feed(settings: Settings, config: SessionConfig) -> BusFeed:
    """Closed candles the market-data service publishes (``tradeloop market-data run``)."""
    if not settings.redis_url:
        raise ConfigError(
            "--feed bus reads the market-data service's candles on the bus and needs REDIS_URL (the service's "
            "Redis); set it, or use --feed ccxt for an engine with its own exchange connection"
        )
    return BusFeed(
        RedisBus(settings.redis_url, prefix=settings.redis_prefix),
        lake=CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir),
        venue=config.exchange,
        symbols=list(config.symbols),
        timeframe=config.timeframe,
        session=config.name,
        stale_after_s=config.feed_stale_after_s,
    )


def check_replay_data(feed: ReplayFeed | VenueReplay, config: SessionConfig) -> int:
    """Every series of a replay has candles in the lake, some of them in ``start``..``end``;
    the replay's first bar (ms)."""
    lake = feed.lake
    missing = [k for k in feed.keys if not lake.exists(k)]
    if missing:
        known = ", ".join(_series(k) for k in lake.list_series()) or "none: the lake is empty"
        raise DataError(
            f"no candles in the lake for {', '.join(_series(k) for k in missing)}; the lake has: "
            f"{known}. Fetch them (`tradeloop data fetch` / `data import-sample`) or pick "
            "--exchange/--symbol/--timeframe from that list"
        )
    span = feed.frame
    if config.start is not None:
        span = span.filter(span["ts"] >= config.start)
    if config.end is not None:
        span = span.filter(span["ts"] <= config.end)
    if span.is_empty():
        raise DataError(
            f"{', '.join(_series(k) for k in feed.keys)} have no candles between --start "
            f"{config.start} and --end {config.end} (epoch ms); widen them"
        )
    return earliest(span["ts"])


def _series(key: SeriesKey) -> str:
    return f"{key.exchange}:{key.symbol}:{key.timeframe}"


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
        if isinstance(feed, CcxtFeed | BusFeed):  # a stale feed goes to the audit log (and the log)
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
        if isinstance(feed, CcxtFeed | BusFeed):
            await feed.close()
    return engine
