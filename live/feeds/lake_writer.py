"""Live candles kept in the lake, so research retrains on what live saw.

Every candle a live feed delivers (each bar's and each backfilled one) is buffered and merged
into its series every ``flush_s`` and when the feed closes, through ``CandleLake.write``: the
same validation as an import (a bad candle is quarantined, never stored), atomic files, and a
candle the lake already holds kept as stored (``on_conflict="keep"``: an import of the
exchange's history wins over what the feed saw). The write runs in a worker thread, off the
bar's path; a failed write is logged and its candles kept for the next flush (the feed goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import polars as pl

from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import CANDLE_COLUMNS

log = logging.getLogger(__name__)


class LakeWriter:
    def __init__(self, lake: CandleLake, *, exchange: str, timeframe: str, flush_s: float = 60.0):
        self.lake, self.exchange, self.timeframe, self.flush_s = lake, exchange, timeframe, flush_s
        self.buffer: list[pl.DataFrame] = []
        self.written = 0
        self._task: asyncio.Task | None = None

    def add(self, candles: pl.DataFrame | None) -> None:
        """Candles (symbol + candle columns) to store at the next flush."""
        if candles is not None and not candles.is_empty():
            self.buffer.append(candles.select("symbol", *CANDLE_COLUMNS))
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._every())

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.flush_s)
            await self.flush()

    async def flush(self) -> None:
        if not self.buffer:
            return
        frame, self.buffer = pl.concat(self.buffer, how="vertical_relaxed"), []
        try:
            self.written += await asyncio.to_thread(self._write, frame)
        except Exception:  # the feed keeps trading; the candles wait for the next flush
            log.exception("live candles could not be written to the lake; retrying at the next flush")
            self.buffer.insert(0, frame)

    def _write(self, frame: pl.DataFrame) -> int:
        added = 0
        for (symbol,), rows in frame.unique(["symbol", "ts"], keep="last").sort("ts").group_by("symbol"):
            key = SeriesKey(self.exchange, str(symbol), self.timeframe)
            result = self.lake.write(key, rows.drop("symbol"), source="live feed", quarantine=True, on_conflict="keep")
            added += result.added
        return added

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
