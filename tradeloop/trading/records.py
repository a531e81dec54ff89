"""Keyword-only frozen records that cross between decision, risk, orders and portfolio."""

from __future__ import annotations

from dataclasses import dataclass

from tradeloop.trading.enums import OrderIntentKind, OrderSide, OrderType, TimeInForce
from tradeloop.trading.instrument import InstrumentId

PROTECTIVE_KINDS = (OrderIntentKind.STOP_LOSS, OrderIntentKind.TRAILING_STOP, OrderIntentKind.TAKE_PROFIT)


@dataclass(frozen=True, kw_only=True, slots=True)
class ProtectiveLeg:
    """One protective exit an entry carries (a leg of its bracket): a stop-loss, trailing stop
    or take-profit that becomes active when the entry fills (one-triggers-the-other) and is
    canceled when a sibling fills or the position is closed otherwise (one-cancels-the-other).

    ``trigger_price`` is where the leg would stand had the entry filled at its reference price
    (the decision bar's close); the level that counts is set from the entry's fill price
    (``tradeloop.backtest.fills.stop_levels``). ``None`` when it is not known before the fill
    (an ATR level while the ATR warms up). ``entry_atr``: the ATR at the decision bar's close,
    what an ATR level is measured in from the fill (stored with the leg, so a restart keeps it);
    ``None`` when no leg uses an ATR or it warms up.
    """

    kind: OrderIntentKind  # STOP_LOSS, TRAILING_STOP or TAKE_PROFIT
    trigger_price: float | None = None
    entry_atr: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in PROTECTIVE_KINDS:
            raise ValueError(f"a protective leg is one of {[str(k) for k in PROTECTIVE_KINDS]}, not {self.kind}")

    @property
    def order_type(self) -> OrderType:
        """``take_profit`` for a take-profit, else ``stop``."""
        return OrderType.TAKE_PROFIT if self.kind is OrderIntentKind.TAKE_PROFIT else OrderType.STOP


@dataclass(frozen=True, kw_only=True, slots=True)
class OrderIntent:
    """What a decision asks for, before the risk engine and before it is stored.

    Exactly one of ``quantity`` (base amount: exits, sized entries) and ``quote_amount``
    (quote to spend: an entry sized at the fill, as the backtest does) is set. ``price`` is
    the limit price (limit orders), ``trigger_price`` the stop or take-profit trigger.
    ``reference_price`` is the price the decision saw (the bar's close): the risk engine
    values the intent at it. ``protection``: the protective legs an entry carries (its
    bracket), stored as child orders of the entry with it and sent with it.
    """

    instrument: InstrumentId
    side: OrderSide
    kind: OrderIntentKind
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.GTC
    quantity: float | None = None
    quote_amount: float | None = None
    price: float | None = None
    trigger_price: float | None = None
    reference_price: float | None = None
    reduce_only: bool = False
    protection: tuple[ProtectiveLeg, ...] = ()

    def __post_init__(self) -> None:
        if self.protection and self.kind.reduces:
            raise ValueError(f"{self.kind} {self.instrument}: only an entry carries protective legs")
        if (self.quantity is None) == (self.quote_amount is None):
            raise ValueError(f"{self.kind} {self.instrument}: set exactly one of quantity and quote_amount")
        if self.order_type == OrderType.LIMIT and self.price is None:
            raise ValueError(f"{self.kind} {self.instrument}: a limit order needs price")
        if self.order_type in (OrderType.STOP, OrderType.TAKE_PROFIT) and self.trigger_price is None:
            raise ValueError(f"{self.kind} {self.instrument}: a {self.order_type} order needs trigger_price")

    def notional(self, price: float | None = None) -> float:
        """Quote value at ``price`` (default: the limit price, else the reference price)."""
        if self.quote_amount is not None:
            return self.quote_amount
        px = price if price is not None else (self.price if self.price is not None else self.reference_price)
        if px is None:
            raise ValueError(f"{self.kind} {self.instrument}: no price to value {self.quantity} at")
        return abs(self.quantity or 0.0) * px


@dataclass(frozen=True, kw_only=True, slots=True)
class FillRecord:
    """One execution as the portfolio applies it. ``fee`` is in the quote asset; a positive
    ``quantity`` always, the direction is ``side``."""

    instrument: InstrumentId
    side: OrderSide
    quantity: float
    price: float
    fee: float
    ts: int
    trade_id: str = ""
