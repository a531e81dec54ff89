"""The quote paper book: market orders filled at once at the latest quoted top of book, for the
arbitrage service's paper execution (``live.arbitrage_paper``).

Rules:

1. **Keys.** An order's symbol is its instrument's session key ``venue:BASE-QUOTE``
   (``live.venues``: ``binance:BTC-USDT``); each venue's latest :class:`TopOfBook` is held under
   its key (:meth:`QuotePaperBroker.on_quote`; an older quote than the one held is ignored).
2. **Fills.** A market order with a base ``quantity`` fills at once, immediate-or-cancel, at the
   held quote: a buy at the ask, a sell at the bid, for at most the size quoted there, at the
   venue's taker fee (``fee = quantity * price * taker``, in the quote asset), its time the
   quote's. All of it: ``filled``; part: ``canceled`` with that fill (the rest is not taken);
   no quote of the key, another order type, or a quote amount: ``rejected``, nothing filled.
3. **Nothing rests.** A cancel finds nothing (``unknown``); after a restart the quote an order
   was priced on is gone, so :meth:`recover` never fills: an order never sent is ``canceled``
   (the ``new -> canceled`` of the state machine: never sent), a sent one ``expired``.
4. **Paper only.** ``venue`` is ``paper``; it reaches no exchange.
"""

from __future__ import annotations

from collections.abc import Mapping

from live.brokers.base import FillReport, OrderRequest, OrderState
from live.feeds.base import CandleBatch
from tradeloop.arbitrage import TopOfBook
from tradeloop.data.schema import ccxt_symbol, lake_symbol
from tradeloop.errors import ConfigError
from tradeloop.portfolio import DUST_ABS
from tradeloop.trading import OrderSide, OrderType


def quote_key(venue: str, symbol: str) -> str:
    """The session key of ``symbol`` (ccxt) on ``venue``: ``binance:BTC-USDT`` (rule 1)."""
    return f"{venue}:{lake_symbol(symbol)}"


def key_venue(key: str) -> tuple[str, str]:
    """``binance:BTC-USDT`` -> ``("binance", "BTC/USDT")``: the venue and ccxt symbol of a key."""
    venue, sep, symbol = key.partition(":")
    if not sep or not venue or not symbol:
        raise ConfigError(f"symbol={key!r} is no quote key; write it VENUE:BASE-QUOTE, e.g. binance:BTC-USDT")
    return venue, ccxt_symbol(symbol)


class QuotePaperBroker:
    """The quote paper book (module rules); ``taker_fees``: venue -> taker fee rate."""

    venue = "paper"

    def __init__(self, *, taker_fees: Mapping[str, float]):
        self.taker_fees = dict(taker_fees)
        self.tops: dict[str, TopOfBook] = {}

    def on_quote(self, top: TopOfBook) -> None:
        """Hold ``top`` as its venue's latest quote of its symbol (rule 1)."""
        key = quote_key(top.venue, top.symbol)
        held = self.tops.get(key)
        if held is None or held.ts <= top.ts:
            self.tops[key] = top

    async def submit(self, order: OrderRequest) -> OrderState:
        cid = order.client_order_id
        if order.order_type != OrderType.MARKET or order.quantity is None or not order.quantity > 0:
            return OrderState(cid, "rejected", reason="the quote paper book fills market orders of a base quantity")
        top = self.tops.get(order.symbol)
        if top is None:
            return OrderState(cid, "rejected", reason=f"no quote of {order.symbol} in the paper book")
        venue = top.venue
        if venue not in self.taker_fees:
            raise ConfigError(f"taker_fees has no fee for venue={venue!r}; give it (e.g. {{{venue!r}: 0.001}})")
        side = OrderSide(order.side)
        price, shown = (top.ask, top.ask_size) if side is OrderSide.BUY else (top.bid, top.bid_size)
        qty = min(order.quantity, shown)
        if not qty > 0:
            return OrderState(cid, "canceled", reason=f"nothing quoted at {price} (immediate or cancel)")
        fill = FillReport(
            cid, order.symbol, side.value, f"paper-{cid}", qty, price, qty * price * self.taker_fees[venue], top.ts
        )
        if qty < order.quantity:
            reason = f"{shown} quoted at {price} of {order.quantity} asked; the rest canceled (immediate or cancel)"
            return OrderState(cid, "canceled", venue_order_id=f"paper-{cid}", fills=(fill,), reason=reason)
        return OrderState(cid, "filled", venue_order_id=f"paper-{cid}", fills=(fill,))

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        return []  # every order ended at its submit

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        cid = order.client_order_id
        if not sent:
            return OrderState(cid, "canceled", reason="never sent; its quote is gone after the restart")
        return OrderState(cid, "expired", reason="its quote is gone after the restart; no paper fill was stored")

    async def cancel(self, order: OrderRequest) -> OrderState:
        return OrderState(order.client_order_id, "unknown", reason="nothing rests in the quote paper book")

    def is_dust(self, symbol: str, quantity: float) -> bool:
        return quantity <= DUST_ABS

    async def close(self) -> None:
        return None
