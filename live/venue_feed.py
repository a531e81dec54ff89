"""A replay of a session's instruments on several venues (``live.venues``).

Rules:

* Each venue's series are replayed from the lake by its own ``live.feeds.replay.ReplayFeed``
  (``SeriesKey(venue, SYMBOL, timeframe)``: ``okx:BTC-USDT`` reads the lake's ``okx`` series
  of ``BTC-USDT``), with that feed's rules (validation, bounds, pacing, following the lake).
* Their batches are merged by bar time: one ``CandleBatch`` per bar with every venue's candle
  of it; a venue without a candle at that bar is simply absent from it, as a symbol is.
* Candles, warm-up history and rejected bars name the session's keys (``okx:BTC-USDT``), so
  the engine sees one universe of symbols.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import polars as pl

from live.feeds.base import CandleBatch, RejectedFn
from live.feeds.replay import ReplayFeed
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
