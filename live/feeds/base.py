"""The feed interface: an async iterator of closed-candle batches, one per bar time."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import polars as pl


@dataclass(frozen=True)
class CandleBatch:
    """Every symbol's candle that opened at ``ts`` and has closed (columns: symbol, ts, OHLCV).

    ``received_ns`` is when the feed had the batch (time.perf_counter_ns), for latency figures.
    """

    ts: int
    candles: pl.DataFrame
    received_ns: int


class Feed(Protocol):
    name: str

    def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        """Closed candles newer than ``after_ts``, in time order."""
        ...

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        """Up to ``bars`` candles per symbol opened before ``before_ts`` (the engine's warm-up)."""
        ...
