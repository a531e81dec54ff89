"""Top of book on the bus: the market-data service's quotes (``tradeloop market-data run
--quotes``).

Rules:

1. **Source.** Each symbol's best bid and ask on the service's venue, from the venue's book
   ticker stream where ccxt.pro has one, else its order book (``live.arbitrage.top_of_book``),
   on the same ccxt.pro client as the candles.
2. **Throttled, latest wins.** A symbol's quote goes out at once when its last one went out
   ``min_interval_ms`` ago or more (on this process's monotonic clock); a quote that comes
   sooner is held, replacing any held before it, and goes out when the interval ends. So a
   symbol gets at most one event per interval, and the last quote before a quiet spell is
   never lost.
3. **Event** on the stream ``quotes:<venue>`` (``tradeloop.bus.quotes_stream``): ``venue``,
   ``symbol`` (the lake's name, ``BTC-USDT``, as on ``market:<venue>:<timeframe>``), ``ts``
   (the quote's time, epoch ms: the venue's, else when it arrived), ``bid``, ``bid_size``,
   ``ask``, ``ask_size`` and ``mid``.
4. **The latest-price cache is not written.** It holds the close of an instrument's newest bar
   and that bar's open time (``GET /data/last``'s ``price`` and ``bar_ts``; the engines write
   the same field); a mid stamped with a quote's time would break that contract and flip the
   field between closes and mids. The newest quote of a venue is the newest entry of its
   stream (``XREVRANGE``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from live.bus import EventBus
from tradeloop.arbitrage import TopOfBook
from tradeloop.bus import quotes_stream
from tradeloop.data.schema import lake_symbol
from tradeloop.errors import ConfigError

log = logging.getLogger(__name__)


def quote_event(top: TopOfBook) -> dict:
    """A quote as published (rule 3)."""
    return {
        "venue": top.venue, "symbol": lake_symbol(top.symbol), "ts": top.ts, "bid": top.bid,
        "bid_size": top.bid_size, "ask": top.ask, "ask_size": top.ask_size, "mid": (top.bid + top.ask) / 2,
    }  # fmt: skip


class QuotePublisher:
    """Publishes a venue's quotes on ``quotes:<venue>``, throttled per symbol (module rules)."""

    def __init__(
        self, bus: EventBus, *, venue: str, min_interval_ms: int = 250, clock: Callable[[], float] = time.monotonic
    ):
        if min_interval_ms < 0:
            raise ConfigError(f"min_interval_ms={min_interval_ms} must be 0 or more (milliseconds between quotes)")
        self.bus, self.venue, self.clock = bus, venue, clock
        self.stream = quotes_stream(venue)
        self.interval_s = min_interval_ms / 1000
        self.published = 0
        self._sent_at: dict[str, float] = {}  # symbol -> when its last quote went out
        self._held: dict[str, TopOfBook] = {}  # symbol -> the newest quote not yet out

    async def offer(self, top: TopOfBook) -> bool:
        """Publish ``top`` now if its symbol's interval has passed, else hold it (rule 2);
        whether it went out."""
        last = self._sent_at.get(top.symbol)
        if last is not None and self.clock() - last < self.interval_s:
            self._held[top.symbol] = top
            return False
        await self._publish(top)
        return True

    async def flush(self) -> int:
        """Publish every held quote whose interval has ended; how many went out."""
        out = 0
        for symbol in list(self._held):  # checked one by one: offer() may publish while we wait
            top = self._held.get(symbol)
            if top is not None and self.clock() - self._sent_at[symbol] >= self.interval_s:
                await self._publish(top)
                out += 1
        return out

    async def _publish(self, top: TopOfBook) -> None:
        """Marked sent before the wait, so that no other caller sends the symbol meanwhile."""
        self._held.pop(top.symbol, None)
        self._sent_at[top.symbol] = self.clock()
        await self.bus.publish(self.stream, quote_event(top))
        self.published += 1

    async def run(self, tops: AsyncIterator[TopOfBook], *, stop: asyncio.Event) -> None:
        """Publish ``tops`` until they end or ``stop`` is set; held quotes go out as their
        intervals end (rule 2)."""

        async def consume() -> None:
            async for top in tops:
                await self.offer(top)

        consumer = asyncio.create_task(consume())
        tick = max(self.interval_s / 4, 0.01)
        try:
            while not stop.is_set():
                await asyncio.wait({consumer}, timeout=tick)
                await self.flush()
                if consumer.done() and not stop.is_set():
                    if consumer.exception() is not None:
                        log.error("quotes %s: the top of book source failed: %r", self.venue, consumer.exception())
                    consumer.result()  # its error, if any
                    return
        finally:
            consumer.cancel()
            await asyncio.gather(consumer, return_exceptions=True)
            closing = getattr(tops, "aclose", None)
            if closing is not None:
                await closing()
