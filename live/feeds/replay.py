"""Replay candles from the lake, as fast as possible or at a multiple of real time.

Bad stored bars never wedge a session (the engine resumes after the last bar it took, so
one bar dated years ahead would make it skip every real bar after it). Rules, decided from
the stored data and the replay's own progression only, never from the wall clock:

- Rows that break a validation rule (non-finite, off the grid, ...) are left out when the
  lake is read (``lake_candles``).
- ``future_dated``: a bar that opens more than ``max_jump_bars`` bars after the last bar
  the replay delivered (or ``after_ts`` on resume) is held back unless its series goes on
  from it: the next ``confirm_bars`` grid bars of that symbol are stored too. A venue that
  resumes after an outage delivers a contiguous run and passes; a lone bar dated in the
  future does not. A held-back bar does not move the replay forward, so the real bars after
  the last delivered one still come; it is checked again on every pass (``follow_s``).
- Each skipped bar is reported once, as ``on_rejected(symbol, ts, rule)`` (the runner
  writes it to the session's audit log), or logged when no callback is set.

Following the lake (``follow_s``), where candles arrive one series at a time (an ingest, the
live feed's lake writer):

- The newest bar is held back one pass while a symbol that traded in the bar before it has
  no candle of it yet (its write may be under way), so that it is decided with every symbol.
- A candle stored after its bar went out (later than that pass) comes with the next batch as
  ``backfill``: it joins the engine's window, so the window has no hole, and is not decided.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import polars as pl

from live.feeds.base import CandleBatch, RejectedFn, lake_candles, last_bars
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError

log = logging.getLogger(__name__)


class ReplayFeed:
    """Closed candles of ``symbols`` from the lake, grouped by bar time.

    ``speed``: 0 replays as fast as the engine consumes; ``60`` plays one hour of candles per
    minute. ``start``/``end`` (ms) bound the replay; the warm-up history comes from before it.
    The lake is read on first use, not when the feed is built.
    """

    name = "replay"

    def __init__(
        self,
        lake: CandleLake,
        *,
        exchange: str,
        symbols: list[str],
        timeframe: str,
        speed: float = 0.0,
        start: int | None = None,
        end: int | None = None,
        follow_s: float | None = None,
        max_jump_bars: int = 1000,
        confirm_bars: int = 3,
        on_rejected: RejectedFn | None = None,
    ):
        if speed < 0:
            raise ConfigError(f"speed={speed} is negative; use 0 (as fast as possible) or a multiple of real time")
        if max_jump_bars < 1 or confirm_bars < 1:
            raise ConfigError(f"max_jump_bars={max_jump_bars}, confirm_bars={confirm_bars}: both must be >= 1")
        self.lake = lake
        self.keys = [SeriesKey(exchange, s, timeframe) for s in symbols]
        self.step_ms = timeframe_ms(timeframe)
        self.speed, self.start, self.end, self.follow_s = speed, start, end, follow_s
        self.max_jump_bars, self.confirm_bars = max_jump_bars, confirm_bars
        self.on_rejected = on_rejected
        self._frame: pl.DataFrame | None = None
        self._reported: set[tuple[str, int | None, str]] = set()  # bounded by the bad rows stored
        self._pending: list[tuple[str, int | None, str]] = []

    @property
    def frame(self) -> pl.DataFrame:
        """The good stored candles of every symbol (read on first use)."""
        if self._frame is None:
            self._frame = self._load()
        return self._frame

    def _load(self) -> pl.DataFrame:
        return lake_candles(self.lake, self.keys, on_rejected=self._note)

    def _note(self, symbol: str, ts: int | None, rule: str) -> None:
        if (symbol, ts, rule) not in self._reported:
            self._reported.add((symbol, ts, rule))
            self._pending.append((symbol, ts, rule))

    def _flush(self) -> None:
        """Report skipped bars (queued, so a callback set after the first read still gets them)."""
        pending, self._pending = self._pending, []
        for symbol, ts, rule in pending:
            if self.on_rejected is not None:
                self.on_rejected(symbol, ts, rule)
            else:
                log.warning("replay: skipped %s bar at ts=%s (%s)", symbol, ts, rule)

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        return last_bars(self.frame.filter(pl.col("ts") < before_ts), bars)

    def _window(self, after_ts: int | None) -> pl.DataFrame:
        part = self.frame
        bounds = [x for x in (None if after_ts is None else after_ts + 1, self.start) if x is not None]
        if bounds:
            part = part.filter(pl.col("ts") >= max(bounds))
        if self.end is not None:
            part = part.filter(pl.col("ts") <= self.end)
        return part

    def _admit(self, ts: int, part: pl.DataFrame, anchor: int | None) -> pl.DataFrame:
        """The rows of bar ``ts`` the replay may deliver after ``anchor`` (see the module rules)."""
        if anchor is None or ts - anchor <= self.max_jump_bars * self.step_ms:
            return part
        following = [ts + k * self.step_ms for k in range(1, self.confirm_bars + 1)]
        runs = (
            self.frame.filter(pl.col("ts").is_in(following))
            .group_by("symbol")
            .len()
            .filter(pl.col("len") == self.confirm_bars)
        )
        admitted = part.filter(pl.col("symbol").is_in(runs["symbol"].to_list()))
        for symbol in part.filter(~pl.col("symbol").is_in(runs["symbol"].to_list()))["symbol"]:
            self._note(symbol, ts, "future_dated")
        return admitted

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        """The replay; with ``follow_s`` it then waits for new candles in the lake (``tradeloop
        data ingest`` or the Dagster candles asset add them), checking every ``follow_s`` s."""
        pace = self.step_ms / 1000.0 / self.speed if self.speed > 0 else 0.0
        delivered: dict[str, int] = {}  # symbol -> its newest candle delivered
        held: int | None = None  # the newest bar, held back one pass (module rules)
        while True:
            backfill = self._late(delivered, after_ts) if self.follow_s is not None else None
            for (ts,), part in self._window(after_ts).group_by("ts", maintain_order=True):
                part = self._admit(int(ts), part, after_ts)
                self._flush()
                if part.is_empty():
                    continue
                if self.follow_s is not None and held != ts and self._under_way(int(ts), part):
                    held = int(ts)
                    break
                yield CandleBatch(ts=int(ts), candles=part, received_ns=time.perf_counter_ns(), backfill=backfill)
                backfill = None
                delivered.update(dict.fromkeys(part["symbol"].to_list(), int(ts)))
                after_ts = int(ts)
                await asyncio.sleep(pace)  # 0: still yields to other tasks (control, model watch)
            self._flush()
            if self.follow_s is None:
                return
            await asyncio.sleep(self.follow_s)
            self._frame = self._load()

    def _under_way(self, ts: int, part: pl.DataFrame) -> bool:
        """Bar ``ts`` is the newest stored (a future-dated row aside) and a symbol that has the bar
        before it lacks it."""
        horizon = ts + self.max_jump_bars * self.step_ms  # a row beyond is future-dated (``_admit``), not newer
        if self.frame.filter((pl.col("ts") > ts) & (pl.col("ts") <= horizon)).height:
            return False
        before = self.frame.filter(pl.col("ts") == ts - self.step_ms)["symbol"]
        return bool(set(before.to_list()) - set(part["symbol"].to_list()))

    def _late(self, delivered: dict[str, int], after_ts: int | None) -> pl.DataFrame | None:
        """Stored candles of bars already gone out, newer than their symbol's last delivered one."""
        if after_ts is None or not delivered:
            return None
        marks = pl.DataFrame({"symbol": list(delivered), "_last": list(delivered.values())})
        late = (
            self.frame.filter(pl.col("ts") <= after_ts)
            .join(marks, on="symbol", how="inner")
            .filter(pl.col("ts") > pl.col("_last"))
            .drop("_last")
        )
        return late.sort("symbol", "ts") if late.height else None
