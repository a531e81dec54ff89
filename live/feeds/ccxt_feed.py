"""Live candles from an exchange through ccxt: WebSocket (ccxt.pro ``watch_ohlcv``) with a
REST polling fallback (``fetch_ohlcv``).

* A candle is emitted once, when it has **closed**: on WebSocket when the next candle of the
  symbol starts; on REST when its period has ended by the exchange's clock.
* Symbols are batched per bar time: a batch goes out when every symbol's candle for that
  time has closed, or ``settle_s`` after the first one did (a symbol without trades in a
  bar does not hold the others back).
* Connection errors reconnect with exponential backoff and full jitter; after
  ``ws_failures_before_rest`` failures in a row a symbol falls back to REST polling.
* A symbol with no update for ``stale_after_s`` is reported stale (log + ``stale``), and
  reported recovered when updates resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

import ccxt.pro
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from live.feeds.base import CandleBatch, lake_candles, last_bars
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import CANDLE_COLUMNS, ccxt_symbol, timeframe_ms
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)


class CcxtFeedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    use_websocket: bool = True
    poll_s: float = Field(default=10.0, gt=0, description="REST polling period")
    settle_s: float = Field(default=5.0, ge=0, description="wait for late symbols after a bar's first close")
    stale_after_s: float = Field(default=180.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    ws_failures_before_rest: int = Field(default=3, ge=1)


class CcxtFeed:
    name = "ccxt"

    def __init__(
        self,
        exchange: ccxt.pro.Exchange,
        *,
        lake: CandleLake,
        symbols: list[str],
        timeframe: str,
        config: CcxtFeedConfig | None = None,
        on_stale: Callable[[str, float], None] | None = None,
        seed: int | None = None,
    ):
        self.exchange, self.lake, self.symbols, self.timeframe = exchange, lake, list(symbols), timeframe
        self.config = config or CcxtFeedConfig()
        self.step_ms = timeframe_ms(timeframe)
        self.on_stale = on_stale
        self.rng = random.Random(seed)
        self.last_update: dict[str, float] = {s: time.monotonic() for s in self.symbols}
        self.stale: set[str] = set()
        self.reconnects: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.rest_fallback: set[str] = set()

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        """Warm-up from the lake (``tradeloop data ingest`` fills it); empty if it has none."""
        frame = lake_candles(self.lake, [SeriesKey(self.exchange.id, s, self.timeframe) for s in self.symbols])
        return last_bars(frame.filter(pl.col("ts") < before_ts), bars)

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        queue: asyncio.Queue[tuple[str, list]] = asyncio.Queue()
        tasks = [asyncio.create_task(self._watch(s, queue, after_ts)) for s in self.symbols]
        tasks.append(asyncio.create_task(self._watchdog()))
        pending: dict[int, dict[str, list]] = {}
        first_seen: dict[int, float] = {}
        try:
            while True:
                timeout = None
                if first_seen:
                    oldest = min(first_seen)
                    timeout = max(0.0, first_seen[oldest] + self.config.settle_s - time.monotonic())
                try:
                    symbol, row = await asyncio.wait_for(queue.get(), timeout)
                    ts = int(row[0])
                    pending.setdefault(ts, {})[symbol] = row
                    first_seen.setdefault(ts, time.monotonic())
                except TimeoutError:
                    pass
                for ts in sorted(pending):
                    complete = len(pending[ts]) == len(self.symbols)
                    settled = time.monotonic() >= first_seen[ts] + self.config.settle_s
                    if not (complete or settled):
                        break
                    rows = pending.pop(ts)
                    first_seen.pop(ts)
                    yield CandleBatch(ts=ts, candles=_frame(rows), received_ns=time.perf_counter_ns())
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _watch(self, symbol: str, queue: asyncio.Queue, after_ts: int | None) -> None:
        market = ccxt_symbol(symbol)
        last_closed = after_ts if after_ts is not None else -1
        forming: list | None = None
        failures = 0
        while True:
            rest = (
                not self.config.use_websocket or symbol in self.rest_fallback or not self.exchange.has.get("watchOHLCV")
            )
            try:
                if rest:
                    since = last_closed + 1 if last_closed >= 0 else None
                    candles = await self.exchange.fetch_ohlcv(market, self.timeframe, since=since, limit=100)
                    now = self.exchange.milliseconds()
                    closed = [c for c in candles if c[0] + self.step_ms <= now]
                else:
                    candles = await self.exchange.watch_ohlcv(market, self.timeframe)
                    closed = []
                    for c in sorted(candles, key=lambda c: c[0]):
                        if forming is not None and c[0] > forming[0]:
                            closed.append(forming)
                        if forming is None or c[0] >= forming[0]:
                            forming = list(c)
                self._seen(symbol)
                failures = 0
                for c in sorted(closed, key=lambda c: c[0]):
                    if c[0] > last_closed:
                        last_closed = int(c[0])
                        await queue.put((symbol, c))
                if rest:
                    await asyncio.sleep(self.config.poll_s)
            except ccxt.NetworkError as exc:  # timeouts, lost connections, 5xx
                failures += 1
                self.reconnects[symbol] += 1
                if not rest and failures >= self.config.ws_failures_before_rest and symbol not in self.rest_fallback:
                    log.warning(
                        "%s: WebSocket failed %d times (%s); falling back to REST polling", symbol, failures, exc
                    )
                    self.rest_fallback.add(symbol)
                delay = backoff_delay(
                    failures, base=self.config.backoff_base_s, cap=self.config.backoff_cap_s, rng=self.rng
                )
                log.info("%s: %s; reconnecting in %.2f s", symbol, type(exc).__name__, delay)
                await asyncio.sleep(delay)

    def _seen(self, symbol: str) -> None:
        self.last_update[symbol] = time.monotonic()
        if symbol in self.stale:
            self.stale.discard(symbol)
            log.warning("%s: feed recovered", symbol)

    async def _watchdog(self) -> None:
        check = min(1.0, self.config.stale_after_s / 4)
        while True:
            await asyncio.sleep(check)
            now = time.monotonic()
            for symbol, seen in self.last_update.items():
                age = now - seen
                if age > self.config.stale_after_s and symbol not in self.stale:
                    self.stale.add(symbol)
                    log.warning("%s: feed stale, no update for %.1f s", symbol, age)
                    if self.on_stale is not None:
                        self.on_stale(symbol, age)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.exchange.close()


def _frame(rows: dict[str, list]) -> pl.DataFrame:
    symbols = sorted(rows)
    return pl.DataFrame(
        {
            "symbol": symbols,
            **{name: [float(rows[s][i]) for s in symbols] for i, name in enumerate(CANDLE_COLUMNS) if name != "ts"},
            "ts": [int(rows[s][0]) for s in symbols],
        }
    ).select("symbol", *CANDLE_COLUMNS)
