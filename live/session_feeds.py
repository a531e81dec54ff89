"""A session's feed (``--feed``): the lake's candles replayed, each venue's exchange live over
ccxt, or the market-data service's candles on the bus.

Rules:

* ``replay``: the lake's series of the session's symbols; symbols on several venues
  (``venue:SYMBOL``, ``live.venues``) are replayed as one universe (``live.venue_feed.VenueReplay``).
  Every series must have candles in the lake, some in ``start``..``end`` (:func:`check_replay_data`,
  a ``DataError`` before any session row is written).
* ``ccxt``: one ``live.feeds.ccxt_feed.CcxtFeed`` per venue, each on its own ccxt.pro client
  with that venue's URL overrides (``live.venue_keys.venue_urls``: ``TRADELOOP_VENUES__OKX__WS_URL``,
  the session's own exchange ``TRADELOOP_EXCHANGE_WS_URL``), merged by bar time into one batch
  per bar under the session's keys (``live.venue_feed.VenueCcxtFeed``) when there are several.
* A session is on several venues whenever its symbols' venues are not its exchange alone
  (``live.venues``): ``--exchange binance --symbol okx:BTC-USDT`` reads OKX's series, as its
  broker trades on OKX (``live.session_brokers``).
  Market data needs no keys: the feed's clients are unsigned.
* ``bus``: the market-data service publishes one stream per venue (``tradeloop market-data run``
  per venue); a session reads each of its venues' streams with its own
  ``live.marketdata.bus_feed.BusFeed`` (that venue's symbols, warm-up from that venue's lake
  series), merged by bar time into one batch per bar under the session's keys when there are
  several (``live.venue_feed.VenueBusFeed``): a venue's stream late by more than
  :data:`BUS_SETTLE_S` brings its candle as the next bar's backfill.
"""

from __future__ import annotations

from live.bus import RedisBus
from live.feeds.ccxt_feed import CcxtFeed, CcxtFeedConfig
from live.feeds.replay import ReplayFeed
from live.marketdata.bus_feed import BusFeed
from live.session_config import SessionConfig
from live.venue_feed import VenueBusFeed, VenueCcxtFeed, VenueReplay
from live.venue_keys import venue_urls
from live.venues import instrument_of, several_venues, venues_of
from tradeloop.data import CandleLake, SeriesKey, earliest
from tradeloop.data.exchanges import make_exchange
from tradeloop.errors import ConfigError, DataError
from tradeloop.settings import Settings

BUS_SETTLE_S = 5.0  # how long a bar of one venue's stream waits for the other venues' (--feed bus)


def replay_feed(settings: Settings, config: SessionConfig) -> ReplayFeed | VenueReplay:
    """The lake's candles of the session's symbols; symbols on several venues (``venue:SYMBOL``,
    ``live.venues``) are replayed as one universe (``live.venue_feed``)."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    kind = VenueReplay if several_venues(config.exchange, config.symbols) else ReplayFeed
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


def ccxt_feed(settings: Settings, config: SessionConfig) -> CcxtFeed | VenueCcxtFeed:
    """Closed candles from each venue's exchange (WebSocket, REST fallback); warm-up from the
    lake (module rules)."""
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    options = CcxtFeedConfig(stale_after_s=config.feed_stale_after_s)
    feeds: dict[str, CcxtFeed] = {}
    for venue, keys in venues_of(config.exchange, config.symbols).items():
        api_url, ws_url = venue_urls(settings, venue, own=config.exchange)
        client = make_exchange(venue, timeout_s=settings.http_timeout_s, api_url=api_url, websocket=True, ws_url=ws_url)
        symbols = [instrument_of(config.exchange, k).symbol for k in keys]
        feeds[venue] = CcxtFeed(client, lake=lake, symbols=symbols, timeframe=config.timeframe, config=options)
    if list(feeds) == [config.exchange]:
        return feeds[config.exchange]
    return VenueCcxtFeed(feeds, exchange=config.exchange, symbols=list(config.symbols), settle_s=options.settle_s)


def bus_feed(settings: Settings, config: SessionConfig) -> BusFeed | VenueBusFeed:
    """Closed candles the market-data service publishes (``tradeloop market-data run``): each
    venue's stream, merged by bar time when the session is on several venues (module rules)."""
    if not settings.redis_url:
        raise ConfigError(
            "--feed bus reads the market-data service's candles on the bus and needs REDIS_URL (the service's "
            "Redis); set it, or use --feed ccxt for an engine with its own exchange connection"
        )
    lake = CandleLake(settings.lake_dir, quarantine_root=settings.quarantine_dir)
    feeds: dict[str, BusFeed] = {}
    for venue, keys in venues_of(config.exchange, config.symbols).items():
        feeds[venue] = BusFeed(
            RedisBus(settings.redis_url, prefix=settings.redis_prefix),
            lake=lake,
            venue=venue,
            symbols=[instrument_of(config.exchange, k).symbol for k in keys],
            timeframe=config.timeframe,
            session=config.name,
            stale_after_s=config.feed_stale_after_s,
        )
    if list(feeds) == [config.exchange]:
        return feeds[config.exchange]
    return VenueBusFeed(feeds, exchange=config.exchange, symbols=list(config.symbols), settle_s=BUS_SETTLE_S)


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
