"""The broker interface shared by the paper and the ccxt broker."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from live.feeds.base import CandleBatch


@dataclass(frozen=True)
class OrderRequest:
    """A market order as stored in the operational database before it is sent.

    Entries spend ``quote_amount`` (the base amount follows from the fill price, as the
    backtest sizes at the fill); exits sell ``quantity``.
    """

    client_order_id: str
    symbol: str
    side: str  # buy | sell
    quantity: float | None = None
    quote_amount: float | None = None


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
    """What the venue says about an order: ``status`` new|submitted|filled|rejected|canceled|unknown."""

    client_order_id: str
    status: str
    venue_order_id: str | None = None
    fills: tuple[FillReport, ...] = ()
    reason: str = ""


class Broker(Protocol):
    venue: str

    async def submit(self, order: OrderRequest) -> OrderState:
        """Send once. A create that times out is resolved by :meth:`query`, never resent."""
        ...

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        """Orders that ended with this bar (paper: filled at its open or lapsed; a venue:
        none, its fills come from :meth:`query`)."""
        ...

    async def query(self, client_order_id: str, symbol: str) -> OrderState:
        """The venue's view of an order (after a timeout)."""
        ...

    async def recover(self, order: OrderRequest, *, acknowledged: bool) -> OrderState:
        """After a restart: the state of an order the database still has open. An order the
        venue never acknowledged (``acknowledged=False``) is sent only if the venue does not
        have it; an acknowledged one is only ever queried."""
        ...

    def is_dust(self, symbol: str, quantity: float) -> bool:
        """True when ``quantity`` is too small to sell (below the market's minimum amount)."""
        ...

    async def close(self) -> None: ...
