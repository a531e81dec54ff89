"""Replay candles from the lake, as fast as possible or at a multiple of real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import polars as pl

from live.feeds.base import CandleBatch, lake_candles, last_bars
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError


class ReplayFeed:
    """Closed candles of ``symbols`` from the lake, grouped by bar time.

    ``speed``: 0 replays as fast as the engine consumes; ``60`` plays one hour of candles per
    minute. ``start``/``end`` (ms) bound the replay; the warm-up history comes from before it.
    """

    name = "replay"

    def __init__(self, lake: CandleLake, *, exchange: str, symbols: list[str], timeframe: str,
                 speed: float = 0.0, start: int | None = None, end: int | None = None,
                 follow_s: float | None = None):
        if speed < 0:
            raise ConfigError(f"speed={speed} is negative; use 0 (as fast as possible) or a multiple of real time")
        self.lake = lake
        self.keys = [SeriesKey(exchange, s, timeframe) for s in symbols]
        self.frame = self._load()
        self.step_ms = timeframe_ms(timeframe)
        self.speed, self.start, self.end, self.follow_s = speed, start, end, follow_s

    def _load(self) -> pl.DataFrame:
        return lake_candles(self.lake, self.keys)

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

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        """The replay; with ``follow_s`` it then waits for new candles in the lake (``tradeloop
        data ingest`` or the Dagster candles asset add them), checking every ``follow_s`` s."""
        pace = self.step_ms / 1000.0 / self.speed if self.speed > 0 else 0.0
        while True:
            for (ts,), part in self._window(after_ts).group_by("ts", maintain_order=True):
                yield CandleBatch(ts=int(ts), candles=part, received_ns=time.perf_counter_ns())
                after_ts = int(ts)
                await asyncio.sleep(pace)  # 0: still yields to other tasks (control, model watch)
            if self.follow_s is None:
                return
            await asyncio.sleep(self.follow_s)
            self.frame = self._load()
