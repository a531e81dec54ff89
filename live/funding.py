"""Funding payments of perpetuals: venue cash flows into the session's book, once each.

Rules:

1. A broker that reports funding (``funding_payments(symbol, since_ms=)``, the perpetuals
   broker) is asked at each venue check for every symbol, from the newest payment stored
   (inclusive: the overlap is dropped by id).
2. A payment is stored as a ``cash_flows`` row, unique per (venue, ``funding``, venue id): a
   payment seen twice (a restart, an overlapping page) is applied once. Stored ones move the
   portfolio's cash (``Portfolio.add_cash_flow``, counted in the instrument's realised P&L)
   in the same transaction as the row.
3. A venue that cannot be asked leaves the ledger as it is until the next check.
4. Each position's liquidation price, as the venue reports it, is written to its row at the
   same checks (:func:`record_liquidation_prices`): what ``tradeloop live positions`` shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tradeloop.errors import VenueUnreachableError
from tradeloop.ops import OpsStore
from tradeloop.ops.models import CashFlow, Position
from tradeloop.portfolio import CashFlowKind

log = logging.getLogger(__name__)


@runtime_checkable
class FundingVenue(Protocol):
    async def funding_payments(self, symbol: str, *, since_ms: int) -> list: ...


Book = Callable[[Session, float, str], None]  # the engine's: move cash for a session symbol, store the session row


async def record_funding(
    store: OpsStore, venue: FundingVenue, *, session_id: int, symbols: list[str], book: Book
) -> int:
    """Store and book the funding paid or received since the newest stored; the number booked."""
    booked = 0
    for symbol in symbols:
        with store.transaction() as db:
            since = db.scalar(
                select(func.max(CashFlow.ts)).where(CashFlow.session_id == session_id, CashFlow.kind == "funding")
            )
        try:
            payments = await venue.funding_payments(symbol, since_ms=int(since or 0))
        except VenueUnreachableError as exc:
            log.warning("session %d: funding of %s not read (%s); next check", session_id, symbol, exc)
            continue
        for payment in payments:
            with store.transaction() as db:
                if _store(db, session_id, payment, symbol=symbol):
                    book(db, payment.amount, symbol)
                    OpsStore.audit(
                        db,
                        "funding",
                        session_id=session_id,
                        detail={
                            "symbol": symbol,
                            "instrument": str(payment.instrument),
                            "amount": payment.amount,
                            "id": payment.id,
                        },
                    )
                    booked += 1
    return booked


def _store(db: Session, session_id: int, payment, *, symbol: str) -> bool:
    """The payment's cash-flow row under the session's symbol (as its position row), once."""
    row = CashFlow(
        session_id=session_id,
        venue=payment.instrument.venue,
        symbol=symbol,
        kind=CashFlowKind.FUNDING.value,
        flow_id=payment.id,
        amount=payment.amount,
        ts=payment.ts,
    )
    try:
        with db.begin_nested():
            db.add(row)
        return True
    except IntegrityError:
        return False


@runtime_checkable
class PositionVenue(Protocol):
    """A venue that reports positions (``live.brokers.perps.PerpsBroker``)."""

    def unified(self, symbol: str) -> str: ...

    async def positions(self, symbols: Sequence[str] | None = None) -> list: ...


async def record_liquidation_prices(store: OpsStore, broker: object, *, session_id: int, venue: str) -> None:
    """Write the venue's liquidation price of each position the session holds (rule 4); a
    broker without positions, or a venue that cannot be asked, changes nothing."""
    if not isinstance(broker, PositionVenue):
        return
    with store.transaction() as db:
        held = list(db.scalars(select(Position).where(Position.session_id == session_id, Position.venue == venue)))
    if not held:
        return
    try:
        reported = await broker.positions([p.symbol for p in held])
    except VenueUnreachableError as exc:
        log.warning("session %d: positions not read (%s); next check", session_id, exc)
        return
    unified = {broker.unified(p.symbol): p.symbol for p in held}
    with store.transaction() as db:
        for position in reported:
            symbol = unified.get(position.instrument.symbol)
            row = db.get(Position, (session_id, venue, symbol)) if symbol is not None else None
            if row is not None:
                row.liquidation_price = position.liquidation_price
