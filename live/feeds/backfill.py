"""Candles a symbol missed, fetched over REST before the engine decides on it again.

A WebSocket that drops and reconnects resumes with the candle forming *now*: the bars that
closed while it was away never come over it (Binance resends only the current kline), and the
candle that was forming when it dropped never got its final values. A restart leaves the same
hole between the lake's last candle and the first live one. :class:`GapFiller` keeps each
symbol's last delivered candle and, when the next closed one is not the bar right after it,
fetches the bars in between with ``fetch_ohlcv`` first (a read, so retried with backoff), so
that a symbol's candles always reach the engine in an unbroken sequence.

Rules:

1. A candle reaches the engine only after every bar before it (since the symbol's first
   delivered candle) has: a gap is filled before the candle after it is delivered.
2. A gap that cannot be filled now (REST down too) holds the symbol's later candles back (the
   symbol is absent from the batches meanwhile: it is not decided on a window with a hole);
   the next update tries again.
3. At most ``max_bars`` are fetched for one gap (the window never needs more); older holes
   stay holes, logged.
4. A fetch that returns fewer bars than the gap missed (none: the venue's REST not caught up
   yet) is a gap not filled now (rule 2): a :class:`~tradeloop.errors.DataError` naming the
   bars, the candle after them held. After ``hole_tries`` such answers for the same gap the
   venue is taken at its word (some venues send no candle for a bar without trades): the
   candle goes out after the hole, logged as a warning and kept in ``holes``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import ccxt.pro

from tradeloop.data.schema import ccxt_symbol, timeframe_ms
from tradeloop.errors import DataError
from tradeloop.retry import backoff_delay

log = logging.getLogger(__name__)

PAGE = 1000  # candles per fetch_ohlcv request (Binance's maximum)
Deliver = Callable[[str, list], Awaitable[None]]


async def fetch_closed(
    exchange: ccxt.pro.Exchange,
    symbol: str,
    timeframe: str,
    *,
    start_ts: int,
    end_ts: int,
    attempts: int = 3,
    backoff_s: float = 0.5,
    rng: random.Random | None = None,
) -> list[list]:
    """The candles of ``symbol`` that opened in ``[start_ts, end_ts)``, oldest first, in pages.

    Each page is retried on a network error (timeouts, 5xx) up to ``attempts`` times with
    exponential backoff and full jitter; the last error is raised."""
    step, market, rng = timeframe_ms(timeframe), ccxt_symbol(symbol), rng or random.Random()
    out: list[list] = []
    since = start_ts
    while since < end_ts:
        limit = min(PAGE, (end_ts - since + step - 1) // step)
        for attempt in range(attempts):
            try:
                rows = await exchange.fetch_ohlcv(market, timeframe, since=since, limit=limit)
                break
            except ccxt.NetworkError:
                if attempt + 1 == attempts:
                    raise
                await asyncio.sleep(backoff_delay(attempt, base=backoff_s, cap=10 * backoff_s, rng=rng))
        page = sorted((r for r in rows if since <= r[0] < end_ts), key=lambda r: r[0])
        if not page:
            break
        out += page
        since = int(page[-1][0]) + step
    return out


class GapFiller:
    """Per symbol: the last delivered candle's time and the closed candles held behind a gap."""

    def __init__(
        self,
        exchange: ccxt.pro.Exchange,
        *,
        timeframe: str,
        deliver: Deliver,
        max_bars: int = 1000,
        hole_tries: int = 5,
        rng: random.Random | None = None,
    ):
        self.exchange, self.timeframe, self.deliver = exchange, timeframe, deliver
        self.step, self.max_bars, self.rng = timeframe_ms(timeframe), max_bars, rng or random.Random()
        self.hole_tries = hole_tries
        self.short: dict[str, tuple[int, int]] = {}  # symbol -> (the held candle's ts, short answers for its gap)
        self.holes: dict[str, list[tuple[int, int]]] = {}  # symbol -> (first, last) bars the venue never gave
        self.last: dict[str, int] = {}  # symbol -> ts of the last candle delivered (or known from the lake)
        self.held: dict[str, list[list]] = {}
        self.filled: dict[str, int] = {}  # symbol -> candles fetched over REST so far

    def start_after(self, symbol: str, ts: int | None) -> None:
        """The symbol's candles up to ``ts`` are known (delivered before a restart, or in the lake)."""
        if ts is not None and ts > self.last.get(symbol, -1):
            self.last[symbol] = int(ts)

    async def closed(self, symbol: str, candles: list[list]) -> None:
        """Deliver the newly closed ``candles`` in order, each after the gap before it is filled
        (rule 1); a failed fetch raises and keeps the rest held (rule 2)."""
        held = self.held.setdefault(symbol, [])
        last = self.last.get(symbol, -1)
        seen = {int(h[0]) for h in held}
        held += [c for c in sorted(candles, key=lambda c: c[0]) if c[0] > last and int(c[0]) not in seen]
        held.sort(key=lambda c: c[0])
        while held:
            nxt = held[0]
            last = self.last.get(symbol, -1)
            if last >= 0 and nxt[0] > last + self.step:
                await self._fill(symbol, last, int(nxt[0]))
            held.pop(0)
            if nxt[0] > self.last.get(symbol, -1):
                await self.deliver(symbol, nxt)
                self.last[symbol] = int(nxt[0])

    async def _fill(self, symbol: str, last: int, before: int) -> None:
        start = max(last + self.step, before - self.max_bars * self.step)
        if start > last + self.step:
            log.warning("%s: %d bars missed; only the last %d are fetched", symbol, (before - last) // self.step - 1,
                        self.max_bars)  # fmt: skip
        rows = await fetch_closed(self.exchange, symbol, self.timeframe, start_ts=start, end_ts=before, rng=self.rng)
        for row in rows:
            if row[0] > self.last.get(symbol, -1):
                await self.deliver(symbol, row)
                self.last[symbol] = int(row[0])
        self.filled[symbol] = self.filled.get(symbol, 0) + len(rows)
        log.info("%s: %d missed candles fetched over REST", symbol, len(rows))
        self._check_filled(symbol, before)

    def _check_filled(self, symbol: str, before: int) -> None:
        """Rule 4: the bars right before ``before`` all came, or the gap holds (a DataError), or
        the venue said ``hole_tries`` times that it has none of them."""
        after = self.last.get(symbol, -1)
        missing = (before - after) // self.step - 1
        if missing <= 0:
            self.short.pop(symbol, None)
            return
        held, tries = self.short.get(symbol, (before, 0))
        tries = tries + 1 if held == before else 1
        self.short[symbol] = (before, tries)
        if tries < self.hole_tries:
            raise DataError(
                f"{symbol}: the venue's REST lacks {missing} bar(s) from {after + self.step} to "
                f"{before - self.step}; the candle at {before} waits for them (answer {tries} of {self.hole_tries} "
                "before they are taken as a hole)"
            )
        self.short.pop(symbol)
        self.holes.setdefault(symbol, []).append((after + self.step, before - self.step))
        log.warning("%s: the venue has no candle for %d bars before %d after %d tries; they stay a hole",
                    symbol, missing, before, tries)  # fmt: skip
