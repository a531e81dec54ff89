"""The broker interface shared by the paper and the ccxt broker.

* ``Broker``: what every broker does (send, report, recover after a restart).
* ``VenueAccount``: what a real venue also answers (open orders, trades, balances, and the
  resolution of an order whose outcome is unknown). The engine's run-time reconciliation
  (``live.reconcile``) runs only against a broker that is one; the paper broker is not.

Rule shared by both: **a create goes out at most once.** An order whose create was sent
(``sent=True``) is only ever queried afterwards, whatever the query finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from live.feeds.base import CandleBatch
from tradeloop.trading import OrderType, TimeInForce


def wall_ms() -> int:
    """Wall clock in ms: an order's send time (``sent_at_ms``), compared with the venue's order
    and trade times. Never used to decide."""
    return int(time.time() * 1000)


@dataclass(frozen=True)
class OrderRequest:
    """An order as stored in the operational database before it is sent.

    Market entries may spend ``quote_amount`` (the base amount follows from the fill price, as
    the backtest sizes at the fill); every other order carries ``quantity``. ``order_type``,
    ``time_in_force``, ``price`` (limit) and ``trigger_price`` (stop, take-profit) use the
    ``tradeloop.trading`` vocabulary; ``reduce_only`` orders may only shrink a position.
    """

    client_order_id: str
    symbol: str
    side: str  # buy | sell
    quantity: float | None = None
    quote_amount: float | None = None
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    price: float | None = None
    trigger_price: float | None = None
    reduce_only: bool = False


@dataclass(frozen=True)
class FillReport:
    client_order_id: str
    symbol: str
    side: str
    trade_id: str
    quantity: float
    price: float
    fee: float
    ts: int


@dataclass(frozen=True)
class OrderState:
    """What the venue says about an order: ``status`` is an ``OrderStatus`` value."""

    client_order_id: str
    status: str
    venue_order_id: str | None = None
    fills: tuple[FillReport, ...] = ()
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueTrade:
    """One of the account's trades as the venue lists it (by trade id), before it is matched
    to an order of ours through ``venue_order_id``."""

    venue_order_id: str
    trade_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    ts: int


@dataclass(frozen=True, kw_only=True, slots=True)
class MarketAssets:
    """A market's two assets and the precision its balances are compared with: the amount
    step for the base asset, the price tick for the quote asset."""

    base: str
    quote: str
    amount_step: float
    price_tick: float


class Broker(Protocol):
    venue: str

    async def submit(self, order: OrderRequest) -> OrderState:
        """Send once. A create with an unknown outcome is resolved by querying, never resent."""
        ...

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        """Orders that ended with this bar (paper: filled at its open or lapsed; a venue:
        none, its fills come with the create reply or through reconciliation)."""
        ...

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        """After a restart: the state of an order the database still has open. An order
        whose create never went out (``sent=False``) is sent now; a sent one (at or after
        ``since_ms``, wall clock) is only resolved, never sent again."""
        ...

    async def cancel(self, order: OrderRequest) -> OrderState:
        """Cancel an open order: ``canceled`` (with its fills so far), the state that raced the
        cancel (``filled``, ``expired``, ...), or ``cancel_requested`` when it was not confirmed."""
        ...

    def is_dust(self, symbol: str, quantity: float) -> bool:
        """True when ``quantity`` is too small to sell (below the market's minimum amount)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class VenueAccount(Protocol):
    """A broker on a real venue: what run-time reconciliation asks it."""

    async def resolve(self, order: OrderRequest, *, since_ms: int) -> OrderState:
        """The outcome of an order whose create went out at or after ``since_ms``; ``unknown``
        when the venue cannot prove it (unreachable, or a trade it cannot attribute)."""
        ...

    async def open_orders(self, symbol: str) -> set[str]:
        """Client order ids of the account's open orders on ``symbol``."""
        ...

    async def trades(self, symbol: str, *, after_trade_id: str | None) -> list[VenueTrade]:
        """The account's trades on ``symbol`` after ``after_trade_id`` (the latest ones when None)."""
        ...

    async def balances(self) -> dict[str, float]:
        """Total balance per asset (free + locked)."""
        ...

    async def assets(self, symbol: str) -> MarketAssets: ...
