"""The feed interface: an async iterator of closed-candle batches, one per bar time.

Stored candles reach a feed through ``lake_candles`` only: rows that break a validation rule
(non-finite, off the grid, ...) are left out there and passed to
``on_rejected(symbol, ts, rule)``, so a bad bar never reaches features or decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, Protocol

import polars as pl

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import CANDLE_COLUMNS, empty_candles


@dataclass(frozen=True)
class CandleBatch:
    """Every symbol's candle that opened at ``ts`` and has closed (columns: symbol, ts, OHLCV).

    ``received_ns`` is when the feed had the batch (time.perf_counter_ns), for latency figures.
    ``backfill``: candles of earlier bars a symbol missed (an outage, a restart), fetched before
    this bar (``live.feeds.backfill``), in time order per symbol; they join the engine's window
    ahead of ``candles`` so that no decision is made on a window with a hole, and are never
    decided themselves (their bars have passed).
    """

    ts: int
    candles: pl.DataFrame
    received_ns: int
    backfill: pl.DataFrame | None = None


class Feed(Protocol):
    name: str

    def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        """Closed candles newer than ``after_ts``, in time order."""
        ...

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        """Up to ``bars`` candles per symbol opened before ``before_ts`` (the engine's warm-up)."""
        ...


RejectedFn = Callable[[str, int | None, str], None]  # (symbol, ts, rule) of a bar skipped


def lake_candles(lake: CandleLake, keys: list[SeriesKey], *, on_rejected: RejectedFn | None = None) -> pl.DataFrame:
    """The stored candles of ``keys`` (those the lake has) as one long frame: symbol + candle
    columns, sorted by ts then symbol; empty, with those columns, when it has none. Stored rows
    that break a validation rule are left out and passed to ``on_rejected`` (default: logged)."""
    present = [k for k in keys if lake.exists(k)]
    if not present:
        return empty_candles().select(pl.lit(None, dtype=pl.String).alias("symbol"), *CANDLE_COLUMNS)

    def rejected(key: SeriesKey, rows: pl.DataFrame) -> None:
        for ts, rule in rows.select("ts", "rule").iter_rows():
            on_rejected(key.symbol, ts, rule)  # type: ignore[misc]

    return (
        lake.read_many(present, on_invalid=rejected if on_rejected else None)
        .select("symbol", *CANDLE_COLUMNS)
        .sort("ts", "symbol")
    )


def last_bars(frame: pl.DataFrame, bars: int) -> pl.DataFrame:
    """The last ``bars`` rows of every symbol (rows in time order within a symbol)."""
    return frame.group_by("symbol", maintain_order=True).tail(bars)


def roll_window(window: pl.DataFrame, batch: CandleBatch, *, bars: int) -> tuple[pl.DataFrame, dict[str, int]]:
    """``window`` with ``batch``'s backfill, then its candles, appended (the last ``bars`` of
    each symbol; ``symbol`` and the candle columns), and how many backfilled candles each
    symbol gained. A backfilled candle the window already holds (the lake had it when the
    warm-up was read) is not added twice; each symbol's rows stay in time order whatever
    arrives (:func:`in_time_order`)."""
    columns = ["symbol", *CANDLE_COLUMNS]  # what decisions read; a replay's exchange and timeframe stay out
    parts = [window.select(columns)] if not window.is_empty() else []
    gained: dict[str, int] = {}
    if batch.backfill is not None and not batch.backfill.is_empty():
        new = batch.backfill.select(columns)
        if parts:
            new = new.join(window.select("symbol", "ts"), on=["symbol", "ts"], how="anti", maintain_order="left")
        gained = dict(new.group_by("symbol").len().sort("symbol").iter_rows())
        parts.append(new)
    parts.append(batch.candles.select(columns))
    frame = pl.concat(parts, how="vertical_relaxed") if len(parts) > 1 else parts[0]
    candles = batch.candles
    newer = window.is_empty() or candles.is_empty() or candles["ts"].min() > window["ts"].max()  # type: ignore[operator]
    if not gained and newer and candles["symbol"].is_unique().all():  # the usual bar: nothing to put in order
        return last_bars(frame, bars), gained
    return last_bars(in_time_order(frame), bars), gained


def in_time_order(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with each symbol's rows in strictly increasing ``ts`` whatever order they came in
    (a backfilled candle older than the window's newest, one bar twice: the later row wins);
    unchanged, row order included, when they already are."""
    ordered = frame.select(
        ((pl.col("ts").diff().over("symbol") > 0) | pl.col("ts").diff().over("symbol").is_null()).all()
    )
    if ordered.item():
        return frame
    return frame.unique(["symbol", "ts"], keep="last", maintain_order=True).sort("symbol", "ts", maintain_order=True)


class FeedSignal(enum.Enum):
    """What :func:`next_or_stop` returns besides a batch."""

    ENDED = "ended"
    STOPPED = "stopped"


FEED_ENDED: Final = FeedSignal.ENDED
STOPPED: Final = FeedSignal.STOPPED


async def next_or_stop(batches: AsyncIterator[CandleBatch], stop: asyncio.Event | None) -> CandleBatch | FeedSignal:
    """The feed's next batch, ``FEED_ENDED`` when it has ended, or ``STOPPED`` when ``stop`` was set
    first (the wait for the batch is cancelled: nothing of a bar has happened yet). Without
    ``stop``, the next batch or ``FEED_ENDED``."""
    if stop is None:
        return await anext(batches, FEED_ENDED)
    if stop.is_set():
        return STOPPED
    following = asyncio.ensure_future(anext(batches, FEED_ENDED))
    stopping = asyncio.ensure_future(stop.wait())
    try:
        finished, _ = await asyncio.wait({following, stopping}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # this task was cancelled: end the feed's step before the feed is closed
        stopping.cancel()
        following.cancel()
        with contextlib.suppress(BaseException):
            await following
        raise
    if following in finished:
        stopping.cancel()
        return following.result()
    following.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await following
    return STOPPED
