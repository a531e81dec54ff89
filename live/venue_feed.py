"""A session's instruments on several venues (``live.venues``) as one feed: replayed from the
lake (:class:`VenueReplay`) or live from each venue's exchange (:class:`VenueCcxtFeed`).

Rules:

* Each venue's series are replayed from the lake by its own ``live.feeds.replay.ReplayFeed``
  (``SeriesKey(venue, SYMBOL, timeframe)``: ``okx:BTC-USDT`` reads the lake's ``okx`` series
  of ``BTC-USDT``), with that feed's rules (validation, bounds, pacing, following the lake).
* Their batches are merged by bar time: one ``CandleBatch`` per bar with every venue's candle
  of it; a venue without a candle at that bar is simply absent from it, as a symbol is.
* Candles, warm-up history and rejected bars name the session's keys (``okx:BTC-USDT``), so
  the engine sees one universe of symbols.
* Live (``--feed ccxt``): each venue has its own ``live.feeds.ccxt_feed.CcxtFeed`` on its own
  ccxt.pro client (its rules: closed candles only, reconnects, REST fallback, gap backfill, the
  lake's warm-up of ``SeriesKey(venue, SYMBOL, timeframe)``, live candles kept in that venue's
  lake series). A bar goes out once every venue has delivered its batch of that bar or a later
  one, or ``settle_s`` after the first venue did (a venue that is late or down does not hold the
  others back); the first venue's feed may itself have waited its own ``settle_s`` for its late
  symbols, so a bar goes out at most about twice ``settle_s`` after it closed. A venue's batch
  of a bar already sent comes as the next batch's ``backfill``
  (it joins the window, never decided), as a late symbol's candle does on one venue. A venue
  feed's own backfill is sorted by the merged bars (:func:`split_late`): rows of bars before the
  merged bar going out are its backfill; a row of that very bar is one of its candles (decided
  with it, the bar not having been sent); a row of a later bar (a venue ahead of the others) is
  kept for that bar, so the engine never sees a candle of a bar after the one it decides. A staleness
  report names the session's key. A venue's feed that fails ends the merged feed with its error.
* From the market-data service (``--feed bus``, :class:`VenueBusFeed`): each venue's
  ``live.marketdata.bus_feed.BusFeed`` reads that venue's stream, merged by the same rules. A bus
  feed acknowledges an event once it is asked for the next one, so a venue's feed is asked for its
  next batch only once the merged bar holding its batch went out and the engine asked for the
  next one (its bar committed): after a crash an undecided bar comes again. A venue's batch of a
  bar already sent (late: the next batch's backfill) lets that venue read on at once, so a venue
  late once does not stay one bar behind; that late event is acknowledged before the bar that
  carries it commits. A crash then loses nothing either: the restarted ``BusFeed`` skips the
  events up to the last committed bar and fetches the bars after it again (its ``_earlier``,
  within ``max_backfill_bars`` and what the stream keeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

import polars as pl

from live.feeds.base import CandleBatch, RejectedFn
from live.feeds.ccxt_feed import CcxtFeed
from live.feeds.replay import ReplayFeed
from live.marketdata.bus_feed import BusFeed
from live.venues import instrument_of, venues_of
from tradeloop.data import CandleLake, SeriesKey


class VenueReplay:
    """The merged replay of ``symbols`` (session keys) on their venues (module rules); the other
    options are each ``ReplayFeed``'s."""

    name = "replay"

    def __init__(self, lake: CandleLake, *, exchange: str, symbols: list[str], timeframe: str, **options: object):
        self.lake = lake
        self.feeds: dict[str, ReplayFeed] = {}
        self._keys: dict[str, dict[str, str]] = {}  # venue -> its symbol -> the session's key
        for venue, keys in venues_of(exchange, symbols).items():
            plain = {instrument_of(exchange, k).symbol: k for k in keys}
            self.feeds[venue] = ReplayFeed(lake, exchange=venue, symbols=list(plain), timeframe=timeframe, **options)  # type: ignore[arg-type]
            self._keys[venue] = plain
        self.keys: list[SeriesKey] = [k for feed in self.feeds.values() for k in feed.keys]
        self._on_rejected: RejectedFn | None = None

    @property
    def on_rejected(self) -> RejectedFn | None:
        return self._on_rejected

    @on_rejected.setter
    def on_rejected(self, report: RejectedFn | None) -> None:
        self._on_rejected = report
        for venue, feed in self.feeds.items():
            names = self._keys[venue]
            feed.on_rejected = None if report is None else (lambda s, ts, rule, n=names: report(n.get(s, s), ts, rule))

    def _named(self, venue: str, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.col("symbol").replace_strict(self._keys[venue], default=pl.col("symbol")))

    @property
    def frame(self) -> pl.DataFrame:
        """Every venue's good stored candles, symbols as session keys, sorted by ts then symbol."""
        return pl.concat([self._named(v, f.frame) for v, f in self.feeds.items()]).sort("ts", "symbol")

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        parts = [self._named(v, f.history(before_ts=before_ts, bars=bars)) for v, f in self.feeds.items()]
        return pl.concat(parts).sort("symbol", "ts")

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        streams = {v: f.batches(after_ts=after_ts) for v, f in self.feeds.items()}
        pending: dict[str, CandleBatch] = {}
        for venue, stream in streams.items():
            batch = await anext(stream, None)
            if batch is not None:
                pending[venue] = batch
        while pending:
            ts = min(b.ts for b in pending.values())
            due = [v for v, b in pending.items() if b.ts == ts]
            candles = pl.concat([self._named(v, pending[v].candles) for v in due]).sort("symbol")
            yield CandleBatch(ts=ts, candles=candles, received_ns=time.perf_counter_ns())
            for venue in due:
                batch = await anext(streams[venue], None)
                if batch is None:
                    del pending[venue]
                else:
                    pending[venue] = batch


StaleFn = Callable[[str, float], None]  # (symbol, seconds without an update)


class LiveFeed(Protocol):
    """One venue's live feed on its own symbols: ``CcxtFeed`` or ``BusFeed``."""

    on_stale: StaleFn | None

    def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]: ...

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame: ...

    async def close(self) -> None: ...


class VenueLiveFeed:
    """Several venues' live feeds merged by bar time (module rules).

    Parameters
    ----------
    feeds
        Each venue's feed on its own symbols (``BTC-USDT`` for ``okx:BTC-USDT``), by ccxt id.
    exchange, symbols
        The session's exchange and its keys (``live.venues``).
    settle_s
        How long a bar waits for the other venues after the first one delivered it.
    """

    name = "live"
    hold = False  # a venue's feed is asked for its next batch only once its batch's bar went out

    def __init__(self, feeds: Mapping[str, LiveFeed], *, exchange: str, symbols: list[str], settle_s: float):
        self.feeds = dict(feeds)
        self.settle_s = settle_s
        self._keys: dict[str, dict[str, str]] = {venue: {} for venue in self.feeds}  # venue -> symbol -> key
        for key in symbols:
            instrument = instrument_of(exchange, key)
            self._keys[instrument.venue][instrument.symbol] = key
        self._on_stale: StaleFn | None = None

    @property
    def on_stale(self) -> StaleFn | None:
        return self._on_stale

    @on_stale.setter
    def on_stale(self, report: StaleFn | None) -> None:
        self._on_stale = report
        for venue, feed in self.feeds.items():
            names = self._keys[venue]
            feed.on_stale = None if report is None else (lambda s, age, n=names: report(n.get(s, s), age))

    def _named(self, venue: str, frame: pl.DataFrame) -> pl.DataFrame:
        return frame.with_columns(pl.col("symbol").replace_strict(self._keys[venue], default=pl.col("symbol")))

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        parts = [self._named(v, f.history(before_ts=before_ts, bars=bars)) for v, f in self.feeds.items()]
        return pl.concat(parts).sort("symbol", "ts")

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        queue: asyncio.Queue[tuple[str, CandleBatch | BaseException]] = asyncio.Queue()

        release = {venue: asyncio.Event() for venue in self.feeds}

        async def pump(venue: str, feed: LiveFeed) -> None:
            try:
                async with contextlib.aclosing(feed.batches(after_ts=after_ts)) as stream:  # type: ignore[type-var]
                    async for batch in stream:
                        release[venue].clear()
                        await queue.put((venue, batch))
                        if self.hold:
                            await release[venue].wait()
                raise RuntimeError(f"the {venue} feed ended")
            except Exception as exc:  # noqa: BLE001 - handed to the merged feed, which raises it
                await queue.put((venue, exc))

        tasks = [asyncio.create_task(pump(v, f)) for v, f in self.feeds.items()]
        passed = dict.fromkeys(self.feeds, -1)  # each venue's newest bar delivered
        pending: dict[int, dict[str, CandleBatch]] = {}
        first_seen: dict[int, float] = {}
        floor = after_ts if after_ts is not None else -1
        late: list[pl.DataFrame] = []  # candles of bars already sent: the next batch's backfill
        try:
            while True:
                timeout = None
                if first_seen:
                    timeout = max(0.0, first_seen[min(first_seen)] + self.settle_s - time.monotonic())
                try:
                    venue, got = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    pass
                else:
                    if isinstance(got, BaseException):
                        raise got
                    passed[venue] = max(passed[venue], got.ts)
                    if got.backfill is not None:
                        late.append(self._named(venue, got.backfill))
                    if got.ts <= floor:
                        late.append(self._named(venue, got.candles))
                        release[venue].set()  # backfill: read on, or the venue stays a bar behind
                    else:
                        pending.setdefault(got.ts, {})[venue] = got
                        first_seen.setdefault(got.ts, time.monotonic())
                for ts in sorted(pending):
                    complete = all(p >= ts for p in passed.values())
                    if not (complete or time.monotonic() >= first_seen[ts] + self.settle_s):
                        break
                    due = pending.pop(ts)
                    first_seen.pop(ts)
                    floor = ts
                    candles = pl.concat([self._named(v, b.candles) for v, b in due.items()])
                    candles, backfill, kept = split_late(late, ts=ts, candles=candles)
                    late = [kept] if not kept.is_empty() else []
                    yield CandleBatch(ts=ts, candles=candles, received_ns=time.perf_counter_ns(), backfill=backfill)
                    for venue in due:  # the engine asks for the next bar: this one is committed
                        release[venue].set()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        await asyncio.gather(*(f.close() for f in self.feeds.values()))


class VenueCcxtFeed(VenueLiveFeed):
    """Several venues' ccxt feeds (``--feed ccxt``) merged by bar time (module rules)."""

    name = "ccxt"

    def __init__(self, feeds: Mapping[str, CcxtFeed], *, exchange: str, symbols: list[str], settle_s: float):
        super().__init__(feeds, exchange=exchange, symbols=symbols, settle_s=settle_s)


class VenueBusFeed(VenueLiveFeed):
    """Several venues' streams of the market-data service (``--feed bus``) merged by bar time;
    each venue's feed reads on only once its bar is committed (module rules)."""

    name = "bus"
    hold = True

    def __init__(self, feeds: Mapping[str, BusFeed], *, exchange: str, symbols: list[str], settle_s: float):
        super().__init__(feeds, exchange=exchange, symbols=symbols, settle_s=settle_s)


def split_late(
    late: list[pl.DataFrame], *, ts: int, candles: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame | None, pl.DataFrame]:
    """A merged bar ``ts``'s candles and backfill, and the late rows kept for later bars (module
    rules): a late row of a bar before ``ts`` is backfill; one of bar ``ts`` itself is one of its
    candles (unless that symbol has one); a later one waits for its own bar."""
    if not late:
        return candles.sort("symbol"), None, candles.clear()
    rows = pl.concat(late, how="vertical_relaxed").unique(["symbol", "ts"], keep="last", maintain_order=True)
    now = rows.filter(pl.col("ts") == ts).join(candles.select("symbol"), on="symbol", how="anti")
    before = rows.filter(pl.col("ts") < ts).sort("symbol", "ts")
    candles = pl.concat([candles, now.select(candles.columns)], how="vertical_relaxed").sort("symbol")
    return candles, (before if not before.is_empty() else None), rows.filter(pl.col("ts") > ts)
