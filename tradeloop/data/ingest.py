"""Candle ingestion through ccxt ``fetch_ohlcv``: paginated, incremental, idempotent.

Each page is validated and committed to the lake before the next is requested, so an
interrupted backfill resumes from the last stored candle. Only closed candles are stored.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

import ccxt
import polars as pl

from tradeloop.data.lake import CandleLake
from tradeloop.data.schema import CANDLE_COLUMNS, SeriesKey, ccxt_symbol, earliest, latest, timeframe_ms
from tradeloop.errors import ExchangeError, UnknownSymbolError, UnsupportedTimeframeError
from tradeloop.retry import RetryPolicy, call_with_retry

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]  # (candles stored so far, candles expected in all)


@dataclass(frozen=True)
class IngestResult:
    key: SeriesKey
    requests: int
    added: int
    first_ts: int | None
    last_ts: int | None


class CandleIngestor:
    """Downloads candles from one ccxt exchange into a :class:`CandleLake`."""

    def __init__(
        self,
        exchange: ccxt.Exchange,
        lake: CandleLake,
        *,
        retry: RetryPolicy = RetryPolicy(),
        page_limit: int = 1000,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.exchange = exchange
        self.lake = lake
        self.retry = retry
        self.page_limit = page_limit
        self._sleep = sleep
        self._rng = rng or random.Random(0)
        self._markets_loaded = False
        self.requests = 0

    def _call(self, fn, what: str):
        self.requests += 1
        kwargs = {"sleep": self._sleep} if self._sleep else {}
        return call_with_retry(fn, policy=self.retry, what=what, rng=self._rng, **kwargs)

    def _check(self, symbol: str, timeframe: str) -> None:
        if not self._markets_loaded:
            self._call(self.exchange.load_markets, f"{self.exchange.id} load_markets")
            self._markets_loaded = True
        if symbol not in self.exchange.markets:
            close = [s for s in self.exchange.symbols if s.split("/")[0] == symbol.split("/")[0]][:5]
            raise UnknownSymbolError(
                f"symbol={symbol!r} is not listed on {self.exchange.id}"
                + (f"; similar: {', '.join(close)}" if close else "")
                + "; use the unified BASE/QUOTE form as in ccxt"
            )
        timeframes = getattr(self.exchange, "timeframes", None) or {}
        if timeframe not in timeframes:
            raise UnsupportedTimeframeError(
                f"timeframe={timeframe!r} is not offered by {self.exchange.id}; choose one of {', '.join(timeframes)}"
            )

    def ingest(
        self,
        symbol: str,
        timeframe: str,
        *,
        since: int,
        until: int | None = None,
        progress: ProgressFn | None = None,
    ) -> IngestResult:
        """Store every closed candle from ``since`` (ms, inclusive) to ``until`` (default: now).

        Resumes after the last stored candle when that is later than ``since``.
        """
        unified = ccxt_symbol(symbol)
        step = timeframe_ms(timeframe)  # a malformed timeframe is a ConfigError before any request
        self._check(unified, timeframe)
        key = SeriesKey(self.exchange.id, unified, timeframe)
        now = self.exchange.milliseconds()
        end = min(until, now) if until is not None else now
        last = self.lake.last_ts(key)
        cursor = max(since - since % step, last + step if last is not None else since)
        start_cursor, added, first, last_seen = cursor, 0, None, last
        total = max(1, (end - start_cursor) // step)
        while cursor <= end:
            page = self._call(
                lambda c=cursor: self.exchange.fetch_ohlcv(unified, timeframe, since=c, limit=self.page_limit),
                f"{self.exchange.id} fetch_ohlcv {unified} {timeframe} since={cursor}",
            )
            if not page:
                break
            frame = (
                pl.DataFrame([row[:6] for row in page], schema=list(CANDLE_COLUMNS), orient="row")
                .cast({"ts": pl.Int64})
                .cast({c: pl.Float64 for c in CANDLE_COLUMNS[1:]})
            )
            closed = frame.filter((pl.col("ts") + step <= now) & (pl.col("ts") >= cursor) & (pl.col("ts") <= end))
            if closed.height:
                result = self.lake.write(key, closed, source=f"{self.exchange.id} fetch_ohlcv {unified} {timeframe}")
                added += result.added
                first = first if first is not None else earliest(closed["ts"])
                last_seen = latest(closed["ts"])
            newest = latest(frame["ts"])
            if newest < cursor:
                raise ExchangeError(
                    f"{self.exchange.id} returned candles older than since={cursor} for {unified}; "
                    "the exchange ignores `since` for this timeframe"
                )
            cursor = newest + step
            if progress:
                progress(min(total, (cursor - start_cursor) // step), total)
        log.info("ingested %s: %d new candles in %d requests", key.label, added, self.requests)
        return IngestResult(key=key, requests=self.requests, added=added, first_ts=first, last_ts=last_seen)
