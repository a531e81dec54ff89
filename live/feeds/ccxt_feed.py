"""Live candles from an exchange through ccxt: WebSocket (ccxt.pro ``watch_ohlcv``) with a
REST polling fallback (``fetch_ohlcv``).

* A candle is emitted once, when it has **closed**: on WebSocket when the next candle of the
  symbol starts; on REST when a later candle is in the answer, or its period has ended by the
  exchange's server time (``fetch_time``), never by this host's clock.
* Symbols are batched per bar time: a batch goes out when every symbol's candle for that
  time has closed, or ``settle_s`` after the first one did (a symbol without trades in a
  bar does not hold the others back).
* **One subscription message for every symbol** on a venue whose ccxt.pro ``watch_ohlcv``
  shares ``watch_ohlcv_for_symbols``' subscriptions (Binance's family, Bybit:
  :data:`SUBSCRIBES_TOGETHER`): the first symbol to watch, and the first after a connection
  error, subscribes all the symbols on the WebSocket in one ``SUBSCRIBE`` frame (at most
  :data:`STREAMS_PER_FRAME` streams each), so the others' watches send nothing. ccxt throttles
  a venue's subscription frames (Binance's: about five a second), so one frame per symbol
  kept 100 symbols from all streaming for 20 to 30 s at start and after every reconnect.
* Connection errors reconnect with exponential backoff and full jitter; after
  ``ws_failures_before_rest`` failures in a row a symbol falls back to REST polling. It goes
  back to the WebSocket once ``failback_probes`` probes in a row, ``failback_after_s`` apart,
  got an update over it (hysteresis: one good answer does not bring a flapping socket back).
* A symbol with no update for ``stale_after_s`` is reported stale (log + ``stale``), and
  reported recovered when updates resume.
* Gaps are filled before the next decision (``live.feeds.backfill``): bars missed during an
  outage or a restart are fetched over REST and delivered first. Those of bars already
  batched (or decided before a restart) come as the next batch's ``backfill``: they join the
  engine's window, so it never decides on a window with a hole.
* Every delivered candle is kept in the lake (``live.feeds.lake_writer``), so research
  retrains on what live saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import ccxt.pro
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from live.feeds.backfill import GapFiller
from live.feeds.base import CandleBatch, lake_candles, last_bars
from live.feeds.lake_writer import LakeWriter
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.data.schema import CANDLE_COLUMNS, ccxt_symbol, timeframe_ms
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)
# venues whose watch_ohlcv(symbol) is watch_ohlcv_for_symbols([[symbol, tf]]): a subscription of
# many symbols at once is one every later single watch finds (ccxt's subscribe hashes are shared)
SUBSCRIBES_TOGETHER: tuple[type, ...] = (ccxt.pro.binance, ccxt.pro.bybit)
STREAMS_PER_FRAME = 200  # Binance takes up to 1,024 streams on a connection


class CcxtFeedConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    use_websocket: bool = True
    poll_s: float = Field(default=10.0, gt=0, description="REST polling period")
    settle_s: float = Field(default=5.0, ge=0, description="wait for late symbols after a bar's first close")
    stale_after_s: float = Field(default=180.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=60.0, gt=0)
    ws_failures_before_rest: int = Field(default=3, ge=1)
    failback_after_s: float = Field(default=60.0, gt=0, description="seconds between WebSocket probes on REST")
    failback_probes: int = Field(default=3, ge=1, description="probes in a row that bring a symbol back")
    max_backfill_bars: int = Field(default=1000, ge=1, description="bars fetched at most to fill one gap")
    hole_tries: int = Field(
        default=5, ge=1, description="answers without a gap's bars before they are taken as a hole (backfill rule 4)"
    )
    lake_flush_s: float | None = Field(default=60.0, gt=0, description="live candles to the lake; None: never")


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
        self.failbacks: dict[str, int] = dict.fromkeys(self.symbols, 0)
        self.errors: dict[str, str] = {}  # symbol -> the last error other than a network one
        self.gaps = GapFiller(
            exchange,
            timeframe=timeframe,
            deliver=self._deliver,
            max_bars=self.config.max_backfill_bars,
            hole_tries=self.config.hole_tries,
            rng=self.rng,
        )
        flush = self.config.lake_flush_s
        self.writer = LakeWriter(lake, exchange=exchange.id, timeframe=timeframe, flush_s=flush) if flush else None
        self._queue: asyncio.Queue[tuple[str, list]] = asyncio.Queue()
        self._connection = 0  # bumped by every WebSocket error: the next watch subscribes all again
        self._subscribed: int | None = None  # the connection the symbols were subscribed together on
        self._together: asyncio.Future[None] | None = None

    def history(self, *, before_ts: int, bars: int) -> pl.DataFrame:
        """Warm-up from the lake (``tradeloop data ingest`` fills it); empty if it has none."""
        frame = lake_candles(self.lake, [SeriesKey(self.exchange.id, s, self.timeframe) for s in self.symbols])
        return last_bars(frame.filter(pl.col("ts") < before_ts), bars)

    async def batches(self, *, after_ts: int | None = None) -> AsyncIterator[CandleBatch]:
        queue = self._queue
        while not queue.empty():  # what an earlier call's tasks delivered and nobody took
            queue.get_nowait()
        for symbol in self.symbols:  # what the warm-up holds: a later hole is filled first
            self.gaps.start_after(symbol, self.lake.last_ts(SeriesKey(self.exchange.id, symbol, self.timeframe)))
            if after_ts is not None and self.gaps.last.get(symbol) is None:
                self.gaps.start_after(symbol, after_ts)
            if after_ts is not None and self.gaps.last.get(symbol, -1) > after_ts:
                # bars after the last one the engine committed (a bar that failed to commit, then a
                # database outage): they come again, as a gap fetched over REST
                self.gaps.last[symbol] = after_ts
                self.gaps.held.pop(symbol, None)
        tasks = [asyncio.create_task(self._watch(s)) for s in self.symbols]
        tasks.append(asyncio.create_task(self._watchdog()))
        pending: dict[int, dict[str, list]] = {}
        first_seen: dict[int, float] = {}
        floor = after_ts if after_ts is not None else -1  # bars up to here are batched (or were decided)
        late: list[tuple[str, list]] = []  # their candles, fetched since: the next batch's backfill
        try:
            while True:
                timeout = None
                if first_seen:
                    oldest = min(first_seen)
                    timeout = max(0.0, first_seen[oldest] + self.config.settle_s - time.monotonic())
                try:
                    symbol, row = await asyncio.wait_for(queue.get(), timeout)
                    ts = int(row[0])
                    if ts <= floor:
                        late.append((symbol, row))
                    else:
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
                    floor = ts
                    backfill, late = (_long_frame(late) if late else None), []
                    batch = CandleBatch(
                        ts=ts, candles=_frame(rows), received_ns=time.perf_counter_ns(), backfill=backfill
                    )
                    if self.writer is not None:
                        self.writer.add(backfill)
                        self.writer.add(batch.candles)
                    yield batch
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _deliver(self, symbol: str, row: list) -> None:
        await self._queue.put((symbol, row))

    async def _watch(self, symbol: str) -> None:
        market = ccxt_symbol(symbol)
        forming: list | None = None
        older = 0  # updates in a row older than the forming candle
        failures = 0
        probe: Probe | None = None
        while True:
            rest = (
                not self.config.use_websocket or symbol in self.rest_fallback or not self.exchange.has.get("watchOHLCV")
            )
            try:
                if rest:
                    last = self.gaps.last.get(symbol, -1)
                    since = last + 1 if last >= 0 else None
                    candles = await self.exchange.fetch_ohlcv(market, self.timeframe, since=since, limit=100)
                    closed = await self._closed_by_venue(candles)
                else:
                    await self._subscribe_together()
                    candles = await self.exchange.watch_ohlcv(market, self.timeframe)
                    closed = []
                    horizon = self.exchange.milliseconds() + self.step_ms  # a kline opening later is a venue's glitch
                    for c in sorted((c for c in candles if c[0] <= horizon), key=lambda c: c[0]):
                        if forming is not None and c[0] > forming[0]:
                            if c[0] == forming[0] + self.step_ms:
                                closed.append(forming)
                            # else its last updates were missed: its final values come with the gap's backfill
                        if forming is None or c[0] >= forming[0]:
                            forming, older = list(c), 0
                        elif (older := older + 1) >= 3:  # updates keep coming from before it: a bogus kline
                            log.warning("%s: kline at %d was out of line with the stream; dropped", symbol, forming[0])
                            forming, older = list(c), 0
                self._seen(symbol)
                failures = 0
                await self.gaps.closed(symbol, closed)
                if rest:
                    probe = probe or Probe(due=time.monotonic() + self.config.failback_after_s)
                    if symbol in self.rest_fallback and await self._probe(symbol, market, probe):
                        probe, forming = None, None
                        continue
                    await asyncio.sleep(self.config.poll_s)
            except ccxt.NetworkError as exc:  # timeouts, lost connections, 5xx
                failures += 1
                self._connection += 1
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
            except Exception as exc:  # noqa: BLE001 - a refusal, a bad reply: the symbol's task never dies
                failures += 1
                self.errors[symbol] = f"{type(exc).__name__}: {exc}"[:300]
                delay = backoff_delay(
                    failures, base=self.config.backoff_base_s, cap=self.config.backoff_cap_s, rng=self.rng
                )
                log.error("%s: %s; trying again in %.2f s", symbol, self.errors[symbol], delay)
                await asyncio.sleep(delay)

    async def _subscribe_together(self) -> None:
        """Once per connection, every symbol on the WebSocket in one subscription, before any
        symbol's own watch (module rules); nothing on a venue outside :data:`SUBSCRIBES_TOGETHER`."""
        if not isinstance(self.exchange, SUBSCRIBES_TOGETHER):
            return
        if self._subscribed != self._connection or self._together is None:
            self._subscribed = self._connection
            self._together = asyncio.ensure_future(self._subscribe_all())
        await asyncio.shield(self._together)  # a load_markets error reaches every waiting watch

    async def _subscribe_all(self) -> None:
        await self.exchange.load_markets()
        pairs = [[ccxt_symbol(s), self.timeframe] for s in self.symbols if s not in self.rest_fallback]
        for i in range(0, len(pairs), STREAMS_PER_FRAME):
            # what the frame's first update returns is not needed (each symbol's own watch reads
            # its candles), nor its error (the symbols' watches get it too)
            frame = asyncio.ensure_future(self.exchange.watch_ohlcv_for_symbols(pairs[i : i + STREAMS_PER_FRAME]))
            frame.add_done_callback(_consume)
        await asyncio.sleep(0)  # their first step registers the subscriptions the single watches find

    async def _closed_by_venue(self, candles: list[list]) -> list[list]:
        """The REST candles that have closed by the exchange's clock, never this host's: each one a
        later candle follows, and the newest once the venue's server time (``fetch_time``, where
        ccxt has it) is past its period; else the newest waits for the next poll."""
        rows = sorted(candles, key=lambda c: c[0])
        if not rows:
            return []
        closed, newest = rows[:-1], rows[-1]
        if self.exchange.has.get("fetchTime"):
            server_ms = await self.exchange.fetch_time()
            if server_ms is not None and newest[0] + self.step_ms <= server_ms:
                closed.append(newest)
        return closed

    async def _probe(self, symbol: str, market: str, probe: Probe) -> bool:
        """On REST after WebSocket failures: when due, one update over the WebSocket; True once
        ``failback_probes`` in a row succeeded (the symbol is back on the WebSocket)."""
        if time.monotonic() < probe.due:
            return False
        probe.due = time.monotonic() + self.config.failback_after_s
        try:
            await asyncio.wait_for(self.exchange.watch_ohlcv(market, self.timeframe), self.config.poll_s)
        except (ccxt.NetworkError, TimeoutError) as exc:
            probe.good = 0
            log.info("%s: WebSocket probe failed (%s); staying on REST", symbol, type(exc).__name__)
            return False
        probe.good += 1
        if probe.good < self.config.failback_probes:
            return False
        self.rest_fallback.discard(symbol)
        self.failbacks[symbol] += 1
        log.warning("%s: WebSocket healthy again (%d probes in a row); back from REST polling", symbol, probe.good)
        return True

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
        if self.writer is not None:
            await self.writer.close()
        with contextlib.suppress(Exception):
            await self.exchange.close()


@dataclass
class Probe:
    """When the next WebSocket probe of a symbol on REST is due, and the good ones in a row."""

    due: float
    good: int = 0


def _long_frame(rows: list[tuple[str, list]]) -> pl.DataFrame:
    """(symbol, candle row) pairs as one frame, in time order per symbol."""
    frame = pl.DataFrame(
        {"symbol": [s for s, _ in rows], **{n: [float(r[i]) for _, r in rows] for i, n in enumerate(CANDLE_COLUMNS)}}
    )
    return frame.with_columns(pl.col("ts").cast(pl.Int64)).select("symbol", *CANDLE_COLUMNS).sort("symbol", "ts")


def _frame(rows: dict[str, list]) -> pl.DataFrame:
    symbols = sorted(rows)
    return pl.DataFrame(
        {
            "symbol": symbols,
            **{name: [float(rows[s][i]) for s in symbols] for i, name in enumerate(CANDLE_COLUMNS) if name != "ts"},
            "ts": [int(rows[s][0]) for s in symbols],
        }
    ).select("symbol", *CANDLE_COLUMNS)


def _consume(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
