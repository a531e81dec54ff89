"""The risk engine's records: the rules by name, the portfolio it judges, and its verdicts.

Comparisons against limits use one tolerance, ``TOL = 1e-9`` relative to the limit (at
least ``1e-9`` absolute), so float noise never decides a verdict (``exceeds``, ``short_of`` and
``reaches`` are defined in ``tradeloop.risk.limits``, which the compiled backtest shares):

* a cap (``max_*``) is exceeded when ``value - limit > TOL * max(1, |limit|)``: holding
  exactly the cap is allowed;
* a minimum (``min_*``) is missed when ``limit - value > TOL * max(1, |limit|)``;
* a loss limit (daily loss, drawdown) is reached when ``value - limit >= -TOL * max(1, |limit|)``:
  losing exactly the limit trips it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Protocol

from tradeloop.risk.limits import FLAT_QTY
from tradeloop.trading import InstrumentId, OrderIntent


class RiskRule(StrEnum):
    """Every reason the risk engine gives, in the order the pre-trade check applies them
    (``tradeloop.risk.checks``), then the kill switch's two triggers. A member's index in this
    order is its code in ``tradeloop.risk.limits`` (``RiskRule.of(code)``)."""

    INVALID = "invalid"  # a quantity, quote amount or price that is not a finite positive number
    NOT_REDUCING = "not_reducing"  # a reducing intent that would open or grow a position
    KILL_SWITCH = "kill_switch"
    THROTTLE = "throttle"
    NO_PRICE = "no_price"
    PRICE_BAND = "price_band"
    MIN_AMOUNT = "min_amount"
    MIN_NOTIONAL = "min_notional"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION_NOTIONAL = "max_position_notional"
    MAX_OPEN_POSITIONS = "max_open_positions"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    MAX_NET_EXPOSURE = "max_net_exposure"
    DAILY_LOSS = "daily_loss"  # kill switch trigger
    MAX_DRAWDOWN = "max_drawdown"  # kill switch trigger

    @classmethod
    def of(cls, code: int) -> RiskRule:
        """The rule of a ``tradeloop.risk.limits`` code (its index in this enum)."""
        return _RULES[code]


_RULES: tuple[RiskRule, ...] = tuple(RiskRule)


class Holdings(Protocol):
    """Anything with a portfolio's four numbers (e.g. ``tradeloop.portfolio``'s snapshot)."""

    @property
    def equity(self) -> float: ...
    @property
    def cash(self) -> float: ...
    @property
    def positions(self) -> Mapping[InstrumentId, float]: ...
    @property
    def prices(self) -> Mapping[InstrumentId, float]: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PortfolioSnapshot:
    """The portfolio as the risk engine sees it at a bar's close.

    ``positions`` maps instruments to signed quantities (base units, short < 0); ``prices``
    to their last trade price. Every non-flat position needs a finite positive price.
    ``equity`` is cash plus positions marked at ``prices`` (the caller's number: fees and
    funding are its business).

    ``gross``: for a snapshot that nets several books of one session (``live.slice_risk``), each
    instrument's quantity summed *unsigned* over the books; an instrument in it is held (open
    positions) and counts its gross in the gross exposure, whatever the books net to. None: one
    book, ``|positions|``.
    """

    equity: float
    cash: float
    positions: Mapping[InstrumentId, float] = field(default_factory=dict)
    prices: Mapping[InstrumentId, float] = field(default_factory=dict)
    gross: Mapping[InstrumentId, float] | None = None

    def __post_init__(self) -> None:
        for inst, q in self.positions.items():
            px = self.prices.get(inst)
            if abs(q) > FLAT_QTY and (px is None or not (math.isfinite(px) and px > 0)):
                raise ValueError(f"PortfolioSnapshot: position {q} in {inst} has no positive last price ({px})")

    @classmethod
    def of(cls, holdings: Holdings) -> PortfolioSnapshot:
        """This record from any object with ``equity``, ``cash``, ``positions`` and ``prices``
        (returned as is when it already is one)."""
        if isinstance(holdings, PortfolioSnapshot):
            return holdings
        return cls(
            equity=float(holdings.equity),
            cash=float(holdings.cash),
            positions=dict(holdings.positions),
            prices=dict(holdings.prices),
            gross=getattr(holdings, "gross", None),
        )

    def notional(self, instrument: InstrumentId) -> float:
        """Signed quote value of the position in ``instrument`` at its last price (0 when flat)."""
        q = self.positions.get(instrument, 0.0)
        return q * self.prices[instrument] if abs(q) > FLAT_QTY else 0.0

    def open_positions(self) -> int:
        """How many instruments are held (``|quantity| > 1e-12``)."""
        return sum(1 for q in self.positions.values() if abs(q) > FLAT_QTY)

    def gross_quantity(self, instrument: InstrumentId) -> float:
        """The unsigned quantity held in ``instrument`` over every book (``gross``; one book: ``|position|``)."""
        if self.gross is not None and instrument in self.gross:
            return self.gross[instrument]
        return abs(self.positions.get(instrument, 0.0))

    def after(
        self, instrument: InstrumentId, quantity: float, price: float, *, reduces: bool = False
    ) -> PortfolioSnapshot:
        """The snapshot after ``quantity`` (signed: buy > 0) of ``instrument`` traded at
        ``price``: position and cash move, equity does not (no fees), and ``price`` becomes the
        instrument's last price only when it had none. With ``gross``, an order that ``reduces``
        its own book's position takes ``|quantity|`` off the instrument's gross, any other adds it."""
        positions = dict(self.positions)
        positions[instrument] = positions.get(instrument, 0.0) + quantity
        prices = dict(self.prices)
        prices.setdefault(instrument, price)
        gross = None
        if self.gross is not None:
            gross = dict(self.gross)
            held = self.gross_quantity(instrument)
            gross[instrument] = max(held - abs(quantity), 0.0) if reduces else held + abs(quantity)
        return PortfolioSnapshot(
            equity=self.equity, cash=self.cash - quantity * price, positions=positions, prices=prices, gross=gross
        )


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, InstrumentId | StrEnum) else value


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskApproved:
    """The intent may go on; ``intent`` is the one to store and send (its quantity rounded
    down to the amount step, its prices to the tick, when market rules apply)."""

    intent: OrderIntent

    @property
    def approved(self) -> bool:
        return True

    def detail(self) -> dict[str, Any]:
        """Plain JSON values for the audit log and the bus."""
        i = self.intent
        return {
            "approved": True,
            "instrument": str(i.instrument),
            "kind": str(i.kind),
            "side": str(i.side),
            "quantity": i.quantity,
            "quote_amount": i.quote_amount,
            "price": i.price,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class RiskDenied:
    """The intent is refused by ``rule``: ``value`` broke ``limit`` (both in the rule's unit:
    quote for notionals, multiples of equity for exposures, fractions for the band, counts for
    positions and the throttle). ``message`` says it in words."""

    rule: RiskRule
    message: str
    limit: float
    value: float
    instrument: InstrumentId
    intent: OrderIntent
    ts: int

    @property
    def approved(self) -> bool:
        return False

    def detail(self) -> dict[str, Any]:
        """Plain JSON values for the audit log and the bus."""
        return {
            "approved": False,
            "rule": str(self.rule),
            "message": self.message,
            "limit": self.limit,
            "value": self.value,
            "instrument": str(self.instrument),
            "kind": str(self.intent.kind),
            "side": str(self.intent.side),
            "quantity": self.intent.quantity,
            "quote_amount": self.intent.quote_amount,
            "ts": self.ts,
        }


RiskResult = RiskApproved | RiskDenied


@dataclass(frozen=True, kw_only=True, slots=True)
class KillSwitchTrip:
    """Why the kill switch tripped: ``rule`` (daily loss or drawdown) at bar ``ts``, with
    ``equity`` against ``reference`` (the day's start equity or the high-water mark) and the
    loss ``value`` (a fraction) that reached ``limit``."""

    rule: RiskRule
    ts: int
    equity: float
    reference: float
    value: float
    limit: float
    message: str

    def detail(self) -> dict[str, Any]:
        """Plain JSON values for the audit log, the bus and the stored risk state."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_detail(cls, data: Mapping[str, Any]) -> KillSwitchTrip:
        return cls(
            rule=RiskRule(data["rule"]),
            ts=int(data["ts"]),
            equity=float(data["equity"]),
            reference=float(data["reference"]),
            value=float(data["value"]),
            limit=float(data["limit"]),
            message=str(data["message"]),
        )
