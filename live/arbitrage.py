"""The arbitrage service: every venue's top of book into the scanner
(``tradeloop.arbitrage``), and what it detects stored and published. Detection only: no
order is sent (paper execution of both legs is not built yet).

Rules:

1. **Sources** are async iterators of :class:`TopOfBook`, merged in arrival order:
   :func:`watch_tops` over a ccxt.pro client (``watch_order_book``, one task per symbol), or a
   replay of recorded quotes (:func:`replay_tops`), which is how the tests drive it.
2. **Stored, then published.** Each event (opened, updated, closed) updates its row in
   ``arbitrage_opportunities`` (``tradeloop.ops.market_store`` rule 2: repeats change
   nothing) and is then published on the bus stream :data:`STREAM` as ``{"kind", ...}`` with
   the opportunity's figures and its row id; a reader that missed the bus finds it in the
   database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import ccxt.pro

from live.bus import EventBus
from tradeloop.arbitrage import ArbitrageEvent, ArbitrageScanner, TopOfBook
from tradeloop.ops.market_store import MarketStore

log = logging.getLogger(__name__)
STREAM = "arbitrage"


def book_top(venue: str, book: dict[str, Any], *, ts: int | None = None) -> TopOfBook | None:
    """The best bid and ask of a ccxt order book (None when a side is empty); ``ts``: the
    book's own time unless given."""
    bids, asks = book.get("bids") or [], book.get("asks") or []
    when = ts if ts is not None else book.get("timestamp")
    if not bids or not asks or when is None:
        return None
    return TopOfBook(
        venue=venue, symbol=book["symbol"], ts=int(when), bid=float(bids[0][0]), bid_size=float(bids[0][1]),
        ask=float(asks[0][0]), ask_size=float(asks[0][1]),
    )  # fmt: skip


async def watch_tops(
    exchange: ccxt.pro.Exchange, symbols: Iterable[str], *, limit: int = 5
) -> AsyncIterator[TopOfBook]:
    """Top of book of ``symbols`` on ``exchange`` as its WebSocket order books change (a book
    without its own time is stamped with the venue client's clock)."""
    queue: asyncio.Queue[TopOfBook] = asyncio.Queue(maxsize=10_000)

    async def watch(symbol: str) -> None:
        while True:
            try:
                book = await exchange.watch_order_book(symbol, limit)
            except ccxt.NetworkError as exc:
                log.info("%s %s: order book watch failed (%s); again", exchange.id, symbol, type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            top = book_top(exchange.id, book, ts=book.get("timestamp") or exchange.milliseconds())
            if top is not None:
                await queue.put(top)

    tasks = [asyncio.create_task(watch(s)) for s in symbols]
    try:
        while True:
            yield await queue.get()
    finally:
        for task in tasks:
            task.cancel()


async def replay_tops(tops: Iterable[TopOfBook]) -> AsyncIterator[TopOfBook]:
    """Recorded quotes, in order."""
    for top in tops:
        yield top


class ArbitrageService:
    """The scanner between the sources and the store and bus (module rules)."""

    def __init__(self, scanner: ArbitrageScanner, *, bus: EventBus, market: MarketStore | None):
        self.scanner, self.bus, self.market = scanner, bus, market

    async def handle(self, top: TopOfBook) -> list[ArbitrageEvent]:
        """Scan one quote; store and publish what it opened, changed or closed (rule 2)."""
        events = self.scanner.update(top)
        for event in events:
            row_id = await asyncio.to_thread(self.market.record, event) if self.market is not None else None
            await self.bus.publish(STREAM, {"kind": event.kind, "id": row_id, **event.opportunity.event()})
        return events

    async def run(self, tops: AsyncIterator[TopOfBook], *, stop: asyncio.Event | None = None) -> int:
        """Scan ``tops`` until they end or ``stop`` is set; how many events were handled."""
        handled = 0
        async for top in tops:
            handled += len(await self.handle(top))
            if stop is not None and stop.is_set():
                break
        return handled
