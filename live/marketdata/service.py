"""The market-data service: one process owns a venue's connections and publishes its closed
candles on the bus, so that engines subscribe instead of each opening their own.

Rules:

1. The service runs a :class:`~live.feeds.ccxt_feed.CcxtFeed` over every symbol engines may
   trade on one venue and timeframe (WebSocket, REST fallback and fail-back, gap backfill,
   live candles kept in the lake: that feed's rules), or a
   :class:`~live.marketdata.sources.SourcedFeed` of that venue and others quoting the same
   assets (failover, fail-back, the cross-source sanity check), and publishes each batch,
   backfill included, as one event on the stream ``market:<venue>:<timeframe>``
   (``tradeloop.bus.market_stream``).
2. With each batch it writes the latest-price cache (``<venue>:<symbol>`` -> close, bar time)
   that the API and the risk engine read.
3. Restarted, it publishes after the last bar it published (read back from the stream): the
   feed fills the hole from the lake's last candle, so no bar is published twice or lost.
4. It needs Redis (``REDIS_URL``): the bus is how engines in other processes hear it. Without
   Redis an engine keeps its own feed (``--feed ccxt``): the embedded default.
5. With ``--quotes`` the same process publishes the venue's top of book on ``quotes:<venue>``
   beside the candles (``live.marketdata.quotes``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import polars as pl

from live.bus import RedisBus
from live.feeds.base import CandleBatch
from live.feeds.ccxt_feed import CcxtFeed
from live.marketdata.sources import SourcedFeed
from tradeloop.bus import decode, market_stream, price_key

log = logging.getLogger(__name__)


def rows_of(frame: pl.DataFrame | None) -> list[list]:
    """Candle rows as [symbol, ts, open, high, low, close, volume] (the event's encoding)."""
    if frame is None or frame.is_empty():
        return []
    return [list(r) for r in frame.select("symbol", "ts", "open", "high", "low", "close", "volume").iter_rows()]


def batch_event(batch: CandleBatch, *, venue: str, timeframe: str) -> dict:
    return {
        "venue": venue,
        "timeframe": timeframe,
        "ts": batch.ts,
        "candles": rows_of(batch.candles),
        "backfill": rows_of(batch.backfill),
    }


class MarketDataService:
    """Publishes ``feed``'s batches on ``bus`` (module rules)."""

    def __init__(self, feed: CcxtFeed | SourcedFeed, bus: RedisBus, *, venue: str, timeframe: str):
        self.feed, self.bus, self.venue, self.timeframe = feed, bus, venue, timeframe
        self.stream = market_stream(venue, timeframe)
        self.published = 0

    async def last_published(self) -> int | None:
        """The bar time of the stream's newest event (rule 3), or None on a new stream."""
        newest: Any = await self.bus.client.xrevrange(self.bus.key(self.stream), count=1)
        if not newest:
            return None
        entry_id, fields = newest[0]
        return int(decode(entry_id, fields).data["ts"])

    async def run(self, *, stop: asyncio.Event | None = None, max_batches: int | None = None) -> None:
        after = await self.last_published()
        log.info("market data %s %s: publishing %s after %s", self.venue, self.timeframe, self.feed.symbols, after)
        batches: Any = self.feed.batches(after_ts=after)  # an async generator: closed below
        try:
            async for batch in batches:
                await self.bus.publish(self.stream, batch_event(batch, venue=self.venue, timeframe=self.timeframe))
                closes = batch.candles.select("symbol", "close").rows()
                await self.bus.set_prices({price_key(self.venue, s): (float(c), batch.ts) for s, c in closes})
                self.published += 1
                if (max_batches is not None and self.published >= max_batches) or (stop is not None and stop.is_set()):
                    break
        finally:
            await batches.aclose()
            await self.feed.close()
