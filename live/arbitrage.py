"""The arbitrage service: every venue's top of book into the scanner
(``tradeloop.arbitrage``), and what it detects stored and published. Detection only by
default: no order is sent. With a :class:`~live.arbitrage_paper.PaperExecutor` (``tradeloop
arbitrage run --paper-execute``) both legs of each opening are paper-traded (rule 4); never
with real money.

Rules:

1. **Sources** are async iterators of :class:`TopOfBook`, several merged in arrival order
   (:func:`merge_tops`): :func:`watch_book_tickers` over a ccxt.pro client (``watch_bids_asks``:
   Binance's ``<symbol>@bookTicker`` stream, the best bid and ask and nothing else),
   :func:`watch_tops` (``watch_order_book``, for a venue without such a stream;
   :func:`top_of_book` picks), one task per symbol, or a replay of recorded quotes
   (:func:`replay_tops`). A quote without a time of its own (Binance's spot bookTicker has
   none) is stamped with the venue client's clock when it arrives. A network error is retried
   after a second; any other error (an unknown symbol, say) ends the source with it.
2. **Stored, then published.** Each event (opened, updated, closed) updates its row in
   ``arbitrage_opportunities`` (``tradeloop.ops.market_store`` rule 2: repeats change
   nothing) and is then published on the bus stream :data:`STREAM` as ``{"kind", ...}`` with
   the opportunity's figures and its row id; a reader that missed the bus finds it in the
   database.
3. **Fees** are each venue's taker rate from its ccxt markets (:func:`taker_fees`: the highest
   over the symbols watched), unless the operator gives the account's own.
4. **Paper execution** (optional, ``live.arbitrage_paper``): every quote also reaches the quote
   paper book; an ``opened`` event, once stored, has both legs paper-executed at the quotes
   that opened it with the same taker fees as the scanner's (the executor's must equal them),
   pre-funded inventory on both venues and no transfer (``tradeloop.arbitrage.execution``),
   stored as orders and fills of the paper session, and the result is published on
   :data:`EXECUTIONS` as ``{"kind": "executed", ...}``. It needs the operational database.
   The paper legs are rounded to each venue's amount step and checked against its minimums
   (:func:`venue_limits`, from the same ccxt markets).
5. **Restart.** At its start the service closes the opportunity rows of its symbols and
   venues that an earlier run left open (``tradeloop.ops.market_store`` rule 3): the scanner's
   state died with that run, so a spread still open now is a new opportunity (a new row, and
   with paper execution a new pair traded from what the session holds then).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import ccxt.pro

from live.arbitrage_paper import PaperExecutor
from live.bus import EventBus
from tradeloop.arbitrage import DEFAULT_STEP, ArbitrageEvent, ArbitrageScanner, MarketLimits, TopOfBook
from tradeloop.errors import ConfigError, UnknownSymbolError
from tradeloop.ops.market_store import MarketStore

log = logging.getLogger(__name__)
STREAM = "arbitrage"
EXECUTIONS = "arbitrage_executions"


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


def ticker_top(venue: str, ticker: dict[str, Any], *, ts: int) -> TopOfBook | None:
    """The best bid and ask of a ccxt ticker (``watch_bids_asks``), None when a side or a size
    is missing; ``ts``: the ticker's own time unless it has none."""
    bid, ask = ticker.get("bid"), ticker.get("ask")
    bid_size, ask_size = ticker.get("bidVolume"), ticker.get("askVolume")
    if bid is None or ask is None or bid_size is None or ask_size is None:
        return None
    when = ticker.get("timestamp") or ts
    return TopOfBook(
        venue=venue, symbol=ticker["symbol"], ts=int(when), bid=float(bid), bid_size=float(bid_size),
        ask=float(ask), ask_size=float(ask_size),
    )  # fmt: skip


Watch = Callable[[str], Awaitable[TopOfBook | None]]


Tops = AsyncGenerator[TopOfBook, None]


async def _per_symbol(exchange: ccxt.pro.Exchange, symbols: Iterable[str], watch: Watch) -> Tops:
    """One task per symbol calling ``watch`` over and over, merged (rule 1)."""
    queue: asyncio.Queue[TopOfBook | BaseException] = asyncio.Queue(maxsize=10_000)

    async def loop(symbol: str) -> None:
        while True:
            try:
                top = await watch(symbol)
            except ccxt.NetworkError as exc:
                log.info("%s %s: top of book watch failed (%s); again", exchange.id, symbol, type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            except Exception as exc:  # noqa: BLE001  (handed to the reader, who raises it)
                await queue.put(exc)
                return
            if top is not None:
                await queue.put(top)

    tasks = [asyncio.create_task(loop(s)) for s in symbols]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def watch_tops(exchange: ccxt.pro.Exchange, symbols: Iterable[str], *, limit: int = 5) -> Tops:
    """Top of book of ``symbols`` on ``exchange`` as its WebSocket order books change (rule 1)."""

    async def watch(symbol: str) -> TopOfBook | None:
        book = await exchange.watch_order_book(symbol, limit)
        return book_top(exchange.id, book, ts=book.get("timestamp") or exchange.milliseconds())

    return _per_symbol(exchange, symbols, watch)


def watch_book_tickers(exchange: ccxt.pro.Exchange, symbols: Iterable[str]) -> Tops:
    """Top of book of ``symbols`` on ``exchange`` from its best bid and ask stream
    (``watch_bids_asks``; Binance: ``<symbol>@bookTicker``), one quote per message (rule 1)."""

    async def watch(symbol: str) -> TopOfBook | None:
        tickers = await exchange.watch_bids_asks([symbol])
        ticker = tickers.get(symbol)
        return None if ticker is None else ticker_top(exchange.id, ticker, ts=exchange.milliseconds())

    return _per_symbol(exchange, symbols, watch)


def top_of_book(exchange: ccxt.pro.Exchange, symbols: Iterable[str]) -> Tops:
    """The venue's best bid and ask stream where ccxt.pro has one, else its order books (rule 1)."""
    if exchange.has.get("watchBidsAsks"):
        return watch_book_tickers(exchange, symbols)
    return watch_tops(exchange, symbols)


async def merge_tops(*sources: AsyncIterator[TopOfBook]) -> Tops:
    """Several sources' quotes in arrival order, until every source ends; a source's error
    ends the merge with it."""
    queue: asyncio.Queue[TopOfBook | BaseException | None] = asyncio.Queue(maxsize=10_000)

    async def drain(source: AsyncIterator[TopOfBook]) -> None:
        try:
            async for top in source:
                await queue.put(top)
        except Exception as exc:  # noqa: BLE001  (handed to the reader, who raises it)
            await queue.put(exc)
        else:
            await queue.put(None)
        finally:
            closing = getattr(source, "aclose", None)
            if closing is not None:
                await closing()

    tasks = [asyncio.create_task(drain(s)) for s in sources]
    ended = 0
    try:
        while ended < len(tasks):
            item = await queue.get()
            if item is None:
                ended += 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def taker_fees(
    clients: Mapping[str, ccxt.pro.Exchange], symbols: Iterable[str], *, overrides: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Each venue's taker fee for the scanner (``ArbitrageConfig.taker_fees``): its ccxt markets'
    ``taker`` rate, the highest over ``symbols`` (one fee per venue), unless ``overrides`` names
    the venue (an account's own tier). A symbol a venue does not list is an UnknownSymbolError."""
    fees: dict[str, float] = {}
    wanted = list(symbols)
    for venue, client in clients.items():
        if overrides and venue in overrides:
            fees[venue] = overrides[venue]
            continue
        markets = await client.load_markets()
        rates = []
        for symbol in wanted:
            if symbol not in markets:
                raise UnknownSymbolError(
                    f"venue {venue!r} lists no market {symbol!r}; drop the symbol or the venue "
                    f"(it lists e.g. {', '.join(sorted(markets)[:5])})"
                )
            rate = markets[symbol].get("taker")
            if rate is None:
                raise ConfigError(
                    f"ccxt's markets of {venue!r} give no taker fee for {symbol!r}; "
                    f"give it with --taker-fee {venue}=0.001"
                )
            rates.append(float(rate))
        fees[venue] = max(rates)
    return fees


def market_limits(market: Mapping[str, Any], *, precision_mode: int) -> MarketLimits:
    """A ccxt market's amount step and minimums (``precision.amount``: a step under ccxt's
    ``TICK_SIZE`` mode (4), a number of decimals under ``DECIMAL_PLACES`` (2); else, or none:
    ``DEFAULT_STEP``)."""
    amount = (market.get("precision") or {}).get("amount")
    step = DEFAULT_STEP
    if amount is not None and float(amount) > 0:
        step = float(amount) if precision_mode == 4 else 10.0 ** -int(amount) if precision_mode == 2 else DEFAULT_STEP
    limits = market.get("limits") or {}
    return MarketLimits(
        amount_step=step,
        min_amount=float((limits.get("amount") or {}).get("min") or 0.0),
        min_cost=float((limits.get("cost") or {}).get("min") or 0.0),
    )


async def venue_limits(
    clients: Mapping[str, ccxt.pro.Exchange], symbols: Iterable[str]
) -> dict[tuple[str, str], MarketLimits]:
    """``(venue, symbol)`` -> the market's amount step and minimums, from ccxt's markets (rule 4)."""
    wanted = list(symbols)
    out = {}
    for venue, client in clients.items():
        markets = await client.load_markets()
        for symbol in wanted:
            if symbol in markets:
                out[(venue, symbol)] = market_limits(markets[symbol], precision_mode=int(client.precisionMode))
    return out


async def replay_tops(tops: Iterable[TopOfBook]) -> AsyncIterator[TopOfBook]:
    """Recorded quotes, in order."""
    for top in tops:
        yield top


class ArbitrageService:
    """The scanner between the sources and the store and bus (module rules); ``symbols``: the
    ones watched (whose rows left open a restart closes; default: the executor's, else all)."""

    def __init__(
        self,
        scanner: ArbitrageScanner,
        *,
        bus: EventBus,
        market: MarketStore | None,
        executor: PaperExecutor | None = None,
        symbols: Iterable[str] | None = None,
    ):
        if executor is not None:
            _check_executor(executor, scanner, market)
        self.scanner, self.bus, self.market, self.executor = scanner, bus, market, executor
        # the symbols whose rows a restart closes (rule 5); None: every symbol between its venues
        self.symbols = list(symbols) if symbols is not None else (executor.symbols if executor else None)
        self.events = 0  # events stored and published so far
        self.executions = 0  # pairs paper-executed (rule 4)

    async def handle(self, top: TopOfBook) -> list[ArbitrageEvent]:
        """Scan one quote; store and publish what it opened, changed or closed (rule 2), and
        paper-execute what it opened (rule 4, with an executor)."""
        if self.executor is not None:
            self.executor.on_quote(top)
        events = self.scanner.update(top)
        for event in events:
            row_id = await asyncio.to_thread(self.market.record, event) if self.market is not None else None
            await self.bus.publish(STREAM, {"kind": event.kind, "id": row_id, **event.opportunity.event()})
            self.events += 1
            if self.executor is not None and row_id is not None:
                done = await self.executor.execute(event, opportunity_id=row_id)
                if done is not None and done.result is not None:
                    await self.bus.publish(EXECUTIONS, {"kind": "executed", **done.event()})
                    self.executions += 1
        return events

    async def run(self, tops: AsyncIterator[TopOfBook], *, stop: asyncio.Event | None = None) -> int:
        """Scan ``tops`` until they end or ``stop`` is set; how many events were handled."""
        handled = 0
        if self.market is not None:  # rule 5
            venues = sorted(self.scanner.config.taker_fees)
            closed = await asyncio.to_thread(self.market.close_open, symbols=self.symbols, venues=venues)
            if closed:
                log.info("arbitrage: %d opportunity row(s) left open by an earlier run closed", closed)
        if self.executor is not None:
            await self.executor.start()  # its session, before the first quote
        try:
            async for top in tops:
                handled += len(await self.handle(top))
                if self.executor is not None:
                    await self.executor.beat()
                if stop is not None and stop.is_set():
                    break
        finally:
            if self.executor is not None:
                await self.executor.close()
        return handled


def _check_executor(executor: PaperExecutor, scanner: ArbitrageScanner, market: MarketStore | None) -> None:
    """Rule 4's conditions, each a ConfigError saying what to change."""
    if market is None:
        raise ConfigError("paper execution stores its orders and fills: give the service the operational database")
    if scanner.config.transfer:
        raise ConfigError(
            "paper execution trades pre-funded inventory on both venues, never a transfer: set transfer=False"
        )
    if executor.taker_fees != scanner.config.taker_fees:
        raise ConfigError(
            f"the paper book's taker fees {executor.taker_fees} differ from the scanner's "
            f"{scanner.config.taker_fees}; give both the same (the result is judged against the scanner's)"
        )
