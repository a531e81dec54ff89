"""One portfolio model: cash, signed positions, fills, marks and exposure.

The live engine, the order manager and the paper broker keep cash and positions through
:class:`Portfolio`; the compiled backtest (``tradeloop.backtest.kernel``) keeps its own loop
with the same arithmetic, and a test holds the two equal bar for bar.

Rules:

1. **Cash.** A fill moves cash by ``-side.sign * quantity * price - fee`` (``fee`` in the
   quote asset, negative for a rebate): a buy pays notional plus fee, a sell receives
   notional less fee. Shorts follow the kernel: selling to open credits the proceeds less
   the fee, buying to close pays notional plus fee.
2. **Equity** = cash + sum(signed quantity * mark). A short's negative value offsets the
   proceeds its sale credited. The mark is the last price given to :meth:`Portfolio.mark`
   for the instrument; a position with no price yet marks at its entry price.
3. **Marks.** A missing price (``None`` or NaN) keeps the last known one, as the kernel does
   for a bar without a close; a finite price <= 0 is an error.
4. **Open and add.** A fill on a flat instrument, or on the side already held, sets the
   entry price to the quantity-weighted average and adds its fee to ``entry_fee``.
   ``entry_ts`` is the fill that opened the position from flat; adds keep it.
5. **Reduce and close.** A fill against the position closes ``c = min(fill, |q|)``. Realised
   P&L gains ``direction * c * (price - entry_price) - entry_fee * c / |q| - fee`` (the
   entry fee is charged pro rata and leaves ``entry_fee``; the entry price is unchanged).
   For a whole position this is the kernel's trade pnl:
   ``direction * qty * (exit - entry) - (entry fee + exit fee)``.
6. **Reverse.** A fill larger than the position closes it with the share
   ``|q| / fill quantity`` of the fee and opens the rest on the other side at the fill
   price, the rest of the fee as its entry fee, ``entry_ts`` the fill's.
7. **Dust.** After a fill, a remainder with
   ``|remainder| <= max(DUST_ABS, DUST_REL * max(|q before|, fill quantity))`` is a close:
   the quantity becomes exactly 0.0 and the whole entry fee is charged; a fill that
   over-closes by no more than that does not reverse (the sliver's cash stays in cash).
   ``DUST_REL = 1e-9`` (a billionth of the trade), ``DUST_ABS = 1e-12`` base units (far
   below any venue's lot size). Stored rows within ``DUST_ABS`` of zero load as flat.
8. **Cash flows** (funding, deposits, withdrawals, adjustments) move cash only; one named
   for an instrument (perp funding) also counts in that instrument's realised P&L.
9. Flat positions are kept (quantity 0.0) so their realised P&L survives, as the stored
   rows do; counts, exposure and snapshots list only open ones. No float is compared with
   ``==``: flat means ``|q| <= DUST_ABS``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType
from typing import Protocol

from tradeloop.errors import PortfolioError
from tradeloop.trading import FillRecord, InstrumentId

DUST_REL = 1e-9
DUST_ABS = 1e-12


class CashFlowKind(StrEnum):
    """Why cash moved without a fill."""

    FUNDING = "funding"  # perpetual funding payment (signed: received > 0)
    DEPOSIT = "deposit"
    WITHDRAWAL = "withdrawal"
    ADJUSTMENT = "adjustment"  # reconciliation with the venue's balance
    TRANSFER = "transfer"  # between the capital slices of one session (live.slices)


def _is_flat(quantity: float) -> bool:
    return abs(quantity) <= DUST_ABS


@dataclass(slots=True, kw_only=True)
class PositionState:
    """One instrument's position. ``quantity`` is signed (+ long, - short); ``entry_fee`` is the
    fee paid on the part still open; ``realized_pnl`` accumulates over the instrument's
    trades. Field names are the stored row's columns (``venue``/``symbol`` are ``instrument``)."""

    instrument: InstrumentId
    quantity: float = 0.0
    entry_price: float = 0.0
    entry_fee: float = 0.0
    entry_ts: int | None = None
    realized_pnl: float = 0.0
    last_price: float | None = None

    @property
    def is_flat(self) -> bool:
        return _is_flat(self.quantity)

    @property
    def direction(self) -> int:
        """+1 long, -1 short, 0 flat."""
        return 0 if self.is_flat else (1 if self.quantity > 0.0 else -1)

    @property
    def mark_price(self) -> float:
        """The last price marked, else the entry price."""
        return self.entry_price if self.last_price is None else self.last_price

    @property
    def market_value(self) -> float:
        """Signed value at the mark (negative for a short)."""
        return self.quantity * self.mark_price

    @property
    def unrealized_pnl(self) -> float:
        """``quantity * (mark - entry_price) - entry_fee``: what closing at the mark without an
        exit fee would realise (the kernel's pnl of an open trade); 0.0 when flat."""
        if self.is_flat:
            return 0.0
        return self.quantity * (self.mark_price - self.entry_price) - self.entry_fee


class PositionRow(Protocol):
    """A stored position (``tradeloop.ops.Position``); ``venue`` is read when the row has it."""

    @property
    def symbol(self) -> str: ...
    @property
    def quantity(self) -> float: ...
    @property
    def entry_price(self) -> float: ...
    @property
    def entry_fee(self) -> float: ...
    @property
    def entry_ts(self) -> int | None: ...
    @property
    def last_price(self) -> float | None: ...
    @property
    def realized_pnl(self) -> float: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class PortfolioSnapshot:
    """The portfolio at one moment, for the risk engine. ``positions`` holds open positions
    only (signed quantities); ``prices`` the mark of every instrument known, with held ones
    never missing (entry price when none was marked). Mappings are read-only."""

    equity: float
    cash: float
    positions: Mapping[InstrumentId, float]
    prices: Mapping[InstrumentId, float]
    gross_exposure: float
    net_exposure: float


class Portfolio:
    """Cash and positions of one account (see the module rules).

    Parameters
    ----------
    cash
        Starting cash in the quote asset, e.g. ``10_000.0``.
    """

    def __init__(self, *, cash: float) -> None:
        self._cash = _finite(cash, "cash")
        self._positions: dict[InstrumentId, PositionState] = {}
        self._prices: dict[InstrumentId, float] = {}
        self._flows: dict[CashFlowKind, float] = {}

    @classmethod
    def from_rows(cls, cash: float, positions: Iterable[PositionRow], *, venue: str | None = None) -> Portfolio:
        """Rebuild from stored rows (a restart reads cash and ``Position`` rows).

        Parameters
        ----------
        cash
            The session's stored cash.
        positions
            Rows with ``symbol, quantity, entry_price, entry_fee, entry_ts, last_price,
            realized_pnl`` and, when they have it, ``venue``.
        venue
            The venue of rows without a ``venue`` column, e.g. ``"paper"``.

        Raises
        ------
        PortfolioError
            A row has no venue and ``venue`` is not given, or holds a non-finite number.
        """
        book = cls(cash=cash)
        for row in positions:
            row_venue = getattr(row, "venue", None) or venue
            if row_venue is None:
                raise PortfolioError(f"position row {row.symbol!r} has no venue; pass venue=, e.g. venue='paper'")
            inst = InstrumentId(row_venue, row.symbol)
            q = _finite(row.quantity, f"{inst} quantity")
            state = PositionState(
                instrument=inst,
                quantity=0.0 if _is_flat(q) else q,
                entry_price=_finite(row.entry_price, f"{inst} entry_price"),
                entry_fee=_finite(row.entry_fee, f"{inst} entry_fee"),
                entry_ts=row.entry_ts,
                realized_pnl=_finite(row.realized_pnl, f"{inst} realized_pnl"),
            )
            if state.is_flat:
                state.entry_price, state.entry_fee, state.entry_ts = 0.0, 0.0, None
            book._positions[inst] = state
            if row.last_price is not None:
                book.mark({inst: row.last_price})
        return book

    # ------------------------------------------------------------------ changes
    def apply_fill(self, fill: FillRecord) -> float:
        """Apply one execution to cash and the instrument's position.

        Returns
        -------
        float
            The cash change: ``-side.sign * quantity * price - fee``.

        Raises
        ------
        PortfolioError
            Quantity or price not finite and > 0, or a non-finite fee.
        """
        qty, px, fee = fill.quantity, fill.price, fill.fee
        if not (math.isfinite(qty) and qty > 0.0 and math.isfinite(px) and px > 0.0 and math.isfinite(fee)):
            raise PortfolioError(
                f"fill {fill.trade_id or '(no trade id)'} on {fill.instrument}: quantity={qty}, price={px}, fee={fee}; "
                "a fill needs finite quantity > 0, price > 0 and fee"
            )
        sign = fill.side.sign
        delta = -sign * qty * px - fee
        self._cash += delta
        state = self._state(fill.instrument)
        held = 0.0 if state.is_flat else abs(state.quantity)
        if held <= 0.0 or (state.quantity > 0.0) == (sign > 0):  # open or add
            total = held + qty
            if _is_flat(total):  # a dust fill opens nothing: its fee is realised
                state.realized_pnl -= fee
                return delta
            state.entry_price = (state.entry_price * held + px * qty) / total
            state.entry_fee += fee
            if held <= 0.0:
                state.entry_ts = fill.ts
            state.quantity = sign * total
            return delta
        direction = -sign  # the side held
        remainder = held - qty  # > 0: still open; < 0: reversed by that much
        if abs(remainder) <= max(DUST_ABS, DUST_REL * max(held, qty)):  # a close
            state.realized_pnl += direction * min(qty, held) * (px - state.entry_price) - state.entry_fee - fee
            state.quantity, state.entry_price, state.entry_fee, state.entry_ts = 0.0, 0.0, 0.0, None
        elif remainder > 0.0:  # a reduction
            charged = state.entry_fee * (qty / held)
            state.realized_pnl += direction * qty * (px - state.entry_price) - charged - fee
            state.entry_fee -= charged
            state.quantity = direction * remainder
        else:  # a reversal through zero
            close_fee = fee * (held / qty)
            state.realized_pnl += direction * held * (px - state.entry_price) - state.entry_fee - close_fee
            state.quantity = sign * -remainder
            state.entry_price, state.entry_fee, state.entry_ts = px, fee - close_fee, fill.ts
        return delta

    def add_cash_flow(self, amount: float, *, reason: CashFlowKind, instrument: InstrumentId | None = None) -> None:
        """Move cash by ``amount`` (signed: > 0 credits) without a fill, e.g. a funding payment.

        With ``instrument`` the amount also counts in that instrument's realised P&L.
        """
        amount = _finite(amount, f"{reason} cash flow")
        self._cash += amount
        self._flows[reason] = self._flows.get(reason, 0.0) + amount
        if instrument is not None:
            self._state(instrument).realized_pnl += amount

    def mark(self, prices: Mapping[InstrumentId, float | None]) -> None:
        """Record the latest prices (e.g. the bar's closes). ``None``/NaN keeps the last known one.

        Raises
        ------
        PortfolioError
            A finite price <= 0 (infinite prices count as missing).
        """
        for inst, px in prices.items():
            if px is None or not math.isfinite(px):
                continue
            if px <= 0.0:
                raise PortfolioError(f"price {px} for {inst} is not positive; pass None for a missing price")
            self._prices[inst] = px
            state = self._positions.get(inst)
            if state is not None:
                state.last_price = px

    # ------------------------------------------------------------------ reads
    @property
    def cash(self) -> float:
        return self._cash

    def equity(self) -> float:
        """Cash plus every position at its mark."""
        return self._cash + sum(s.market_value for s in self._positions.values() if not s.is_flat)

    def quantity(self, instrument: InstrumentId) -> float:
        """Signed quantity held (0.0 when none)."""
        state = self._positions.get(instrument)
        return 0.0 if state is None else state.quantity

    def price(self, instrument: InstrumentId) -> float | None:
        """The last price marked for ``instrument`` (None before the first)."""
        return self._prices.get(instrument)

    def position(self, instrument: InstrumentId) -> PositionState | None:
        """A copy of the instrument's position (flat ones included), None if never traded."""
        state = self._positions.get(instrument)
        return None if state is None else replace(state)

    def positions(self, *, include_flat: bool = False) -> list[PositionState]:
        """Copies of the positions, by instrument; flat ones (kept for their realised P&L) on request."""
        return [replace(s) for _, s in sorted(self._positions.items()) if include_flat or not s.is_flat]

    def open_positions(self) -> int:
        return sum(1 for s in self._positions.values() if not s.is_flat)

    def gross_exposure(self) -> float:
        """Sum of ``|quantity| * mark`` over open positions."""
        return sum(abs(s.market_value) for s in self._positions.values() if not s.is_flat)

    def net_exposure(self) -> float:
        """Sum of ``quantity * mark``: longs minus shorts."""
        return sum(s.market_value for s in self._positions.values() if not s.is_flat)

    def realized_pnl(self) -> float:
        """Realised P&L over every instrument (instrument cash flows included)."""
        return sum(s.realized_pnl for s in self._positions.values())

    def cash_flows(self) -> Mapping[CashFlowKind, float]:
        """Total cash moved without fills, per kind."""
        return MappingProxyType(dict(self._flows))

    def snapshot(self) -> PortfolioSnapshot:
        held = {i: s for i, s in self._positions.items() if not s.is_flat}
        prices = dict(self._prices)
        for inst, state in held.items():
            prices[inst] = state.mark_price
        return PortfolioSnapshot(
            equity=self.equity(),
            cash=self._cash,
            positions=MappingProxyType({i: s.quantity for i, s in held.items()}),
            prices=MappingProxyType(prices),
            gross_exposure=self.gross_exposure(),
            net_exposure=self.net_exposure(),
        )

    def __repr__(self) -> str:
        return f"Portfolio(cash={self._cash:.2f}, open_positions={self.open_positions()}, equity={self.equity():.2f})"

    def _state(self, instrument: InstrumentId) -> PositionState:
        state = self._positions.get(instrument)
        if state is None:
            state = PositionState(instrument=instrument, last_price=self._prices.get(instrument))
            self._positions[instrument] = state
        return state


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise PortfolioError(f"{what}={value} is not a finite number")
    return value
