"""Several sources for the same instruments, in priority order, with failover, fail-back and a
cross-source sanity check.

Each source is a :class:`~live.feeds.ccxt_feed.CcxtFeed` (its own WebSocket, REST fallback and
gap backfill): the venue the session trades first, then other venues quoting the same assets.
:class:`SourcedFeed` yields one batch per bar, each symbol's candle from its *chosen* source.

Rules:

1. A symbol's chosen source is the first in priority order that is healthy for it and has its
   candle for the bar. A source is unhealthy for a symbol while its venue's health score
   (``tradeloop.observability.venues``: latency, errors, staleness, clock skew, status) is
   under ``min_score``, while its feed reports the symbol stale, or while its close diverges
   from the median of every source's close for the bar by more than ``divergence`` (a
   relative bound; with fewer than three closes nobody can tell which one is wrong, and none
   is dropped for it).
2. Failover happens at once (the bar is taken from the next healthy source). Fail-back is
   slower (hysteresis): a higher-priority source takes the symbol back only after it has been
   healthy with a candle for ``failback_bars`` bars in a row.
3. A bar goes out when every source has delivered it (so the sanity check compares every
   close), or ``settle_s`` after the first did: a source late by more than that has missed
   the bar (a symbol no source has is absent, as with one feed).
4. Every switch is recorded (``switches``: bar, symbol, from, to, why) and reported through
   ``on_switch`` (the runner audits it); ``chosen`` is each symbol's current source, and
   ``healthy`` the sources that were healthy with a candle for each of the last 1,000 bars.
5. A source's batch that comes after its bar went out (late) still brings its backfill: those
   candles of earlier bars go out with the next bar's backfill (the engine keeps a candle its
   window holds already once), so bars a source fetched over REST are never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import polars as pl

from live.feeds.base import CandleBatch
from live.feeds.ccxt_feed import CcxtFeed
from tradeloop.observability.venues import VenueHealth

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Switch:
    bar_ts: int
    symbol: str
    source_from: str
    source_to: str
    why: str


@dataclass
class _Bar:
    first_seen: float
    batches: dict[int, CandleBatch] = field(default_factory=dict)  # source index -> its batch


class SourcedFeed:
    name = "sourced"

    def __init__(
        self,
        sources: list[CcxtFeed],
        *,
        divergence: float = 0.02,
        failback_bars: int = 3,
        settle_s: float = 5.0,
        on_switch: Callable[[Switch], None] | None = None,
        health: VenueHealth | None = None,
        min_score: float = 0.5,
    ):
        if not sources:
            raise ValueError("a sourced feed needs at least one source")
        self.sources, self.divergence, self.failback_bars = sources, divergence, failback_bars
        self.settle_s, self.on_switch = settle_s, on_switch
        self.health, self.min_score = health, min_score
        self.symbols = list(sources[0].symbols)
        self.chosen: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.streak: dict[tuple[str, int], int] = {}  # (symbol, source) -> healthy bars in a row
        self.switches: list[Switch] = []
        self.healthy: deque[tuple[int, str, tuple[int, ...]]] = deque(maxlen=1000)  # (bar, symbol, sources)

    def label(self, i: int) -> str:
        return f"{self.sources[i].exchange.id}#{i}"

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        return self.sources[0].history(before_ts=before_ts, bars=bars)

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        queue: asyncio.Queue[tuple[int, CandleBatch]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._pump(i, feed, queue, after_ts)) for i, feed in enumerate(self.sources)]
        bars: dict[int, _Bar] = {}
        floor = after_ts if after_ts is not None else -1
        late: list[pl.DataFrame] = []  # backfill of batches that came after their bar went out (rule 5)
        try:
            while True:
                timeout = None
                if bars:
                    oldest = bars[min(bars)]
                    timeout = max(0.0, oldest.first_seen + self.settle_s - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    i, batch = await asyncio.wait_for(queue.get(), timeout)
                    if batch.ts > floor:
                        bars.setdefault(batch.ts, _Bar(time.monotonic())).batches[i] = batch
                    elif batch.backfill is not None and not batch.backfill.is_empty():
                        late.append(batch.backfill)
                for ts in sorted(bars):
                    bar = bars[ts]
                    settled = time.monotonic() >= bar.first_seen + self.settle_s
                    if not (settled or self._complete(bar)):
                        break
                    del bars[ts]
                    floor = ts
                    yield self._merge(ts, bar, late=late)
                    late = []
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, i: int, feed: CcxtFeed, queue: asyncio.Queue, after_ts: int | None) -> None:
        async for batch in feed.batches(after_ts=after_ts):
            await queue.put((i, batch))

    def _complete(self, bar: _Bar) -> bool:
        """Every source delivered the bar (so the sanity check sees every close)."""
        return len(bar.batches) == len(self.sources)

    def _closes(self, bar: _Bar, symbol: str) -> dict[int, float]:
        out = {}
        for i, batch in bar.batches.items():
            row = batch.candles.filter(pl.col("symbol") == symbol)
            if row.height:
                out[i] = float(row["close"][0])
        return out

    def _unhealthy(self, i: int, symbol: str, closes: dict[int, float]) -> str | None:
        if symbol in self.sources[i].stale:
            return "stale"
        venue = self.sources[i].exchange.id
        if self.health is not None and (score := self.health.score(venue)) < self.min_score:
            return f"{venue}'s health score {score:.2f} is under {self.min_score:.2f}"
        if i in closes and len(closes) >= 3:
            median = statistics.median(closes.values())
            if median > 0 and abs(closes[i] / median - 1.0) > self.divergence:
                return f"close {closes[i]:g} is {closes[i] / median - 1.0:+.2%} from the sources' median {median:g}"
        return None

    def _pick(self, symbol: str, bar: _Bar, *, record: bool, bar_ts: int = -1) -> tuple[int | None, str]:
        closes = self._closes(bar, symbol)
        healthy = [i for i in range(len(self.sources)) if i in closes and self._unhealthy(i, symbol, closes) is None]
        if record:
            for i in range(len(self.sources)):
                self.streak[(symbol, i)] = self.streak.get((symbol, i), 0) + 1 if i in healthy else 0
            self.healthy.append((bar_ts, symbol, tuple(healthy)))
        current = self.chosen[symbol]
        better = [i for i in healthy if i < current and self.streak.get((symbol, i), 0) >= self.failback_bars]
        if better:
            return better[0], "fail-back: healthy for the last bars"
        if current in healthy:
            return current, ""
        if not healthy:
            return None, "no healthy source has the bar"
        why = self._unhealthy(current, symbol, closes) or "no candle for the bar"
        return healthy[0], f"failover: {why}"

    def _merge(self, ts: int, bar: _Bar, *, late: list[pl.DataFrame]) -> CandleBatch:
        rows: list[pl.DataFrame] = []
        backfills: list[pl.DataFrame] = []
        for symbol in self.symbols:
            i, why = self._pick(symbol, bar, record=True, bar_ts=ts)
            if i is None:
                continue
            if i != self.chosen[symbol]:
                switch = Switch(ts, symbol, self.label(self.chosen[symbol]), self.label(i), why)
                self.switches.append(switch)
                log.warning("%s at %d: %s -> %s (%s)", symbol, ts, switch.source_from, switch.source_to, why)
                if self.on_switch is not None:
                    self.on_switch(switch)
                self.chosen[symbol] = i
            batch = bar.batches[i]
            rows.append(batch.candles.filter(pl.col("symbol") == symbol))
            if batch.backfill is not None:
                backfills.append(batch.backfill.filter(pl.col("symbol") == symbol))
        first = min(b.received_ns for b in bar.batches.values())
        backfills += late  # after the chosen sources' own: theirs win a bar both have
        backfill = None
        if backfills and any(b.height for b in backfills):
            merged = pl.concat(backfills, how="vertical_relaxed").filter(pl.col("ts") < ts)
            backfill = merged.unique(["symbol", "ts"], keep="first", maintain_order=True).sort("symbol", "ts")
        candles = pl.concat(rows) if rows else _empty(bar)
        return CandleBatch(ts=ts, candles=candles, received_ns=first, backfill=backfill)

    async def close(self) -> None:
        for feed in self.sources:
            await feed.close()


def _empty(bar: _Bar) -> pl.DataFrame:
    return next(iter(bar.batches.values())).candles.clear()
