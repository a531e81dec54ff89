"""The books of a session split in capital slices (``live.slices``), as the database has them:
the champion's (``sessions.cash`` and its ``positions`` rows) and each funded slice's (its
funding, ``challengers.slice_cash`` at ``slice_ts``, plus the fills of its orders,
``orders.capital_slice``, in the order they were stored). The engine rebuilds a slice with it at a
restart; the API, the CLI and the dashboard read every book with it, so people see what the
engine trades: each position tagged with its book, the whole session's cash beside the champion's.

A slice's positions are marked at the last price the session knows for the instrument (its
``positions`` row's mark), else at the slice's last fill.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from tradeloop.instrument_keys import instrument_of
from tradeloop.ops import Fill, Order, Position, TradingSession
from tradeloop.ops.challenger_models import ChallengerRow
from tradeloop.portfolio import Portfolio
from tradeloop.trading import FillRecord, OrderSide

__all__ = ["CHAMPION", "FUNDED", "book_of", "session_books", "slice_book", "whole_cash"]

CHAMPION = "champion"  # the champion's book (the session's own) where books are named
FUNDED = ("open", "closing")  # a slice that holds money


def book_of(capital_slice: str | None) -> str:
    """The book an order (``orders.capital_slice``) belongs to: the challenger's artifact, or ``champion``."""
    return capital_slice or CHAMPION


def slice_book(db: Session, session: TradingSession, row: ChallengerRow) -> Portfolio:
    """A funded slice's book: its funding plus its orders' fills (not marked)."""
    book = Portfolio(cash=row.slice_cash or 0.0)
    fills = db.scalars(
        select(Fill)
        .join(Order, Order.id == Fill.order_id)
        .where(
            Fill.session_id == session.id,
            Order.capital_slice == row.artifact,
            Order.decided_ts >= (row.slice_ts or 0),
        )
        .order_by(Fill.id)
    )
    for f in fills:
        book.apply_fill(
            FillRecord(
                instrument=instrument_of(session.exchange, f.symbol), side=OrderSide(f.side), quantity=f.quantity,
                price=f.price, fee=f.fee, ts=f.ts, trade_id=f.trade_id,
            )
        )  # fmt: skip
    return book


def session_books(db: Session, session: TradingSession) -> dict[str, Portfolio]:
    """Every book of the session: ``champion`` first, then each funded slice by artifact, marked
    (module rules)."""
    rows = list(db.scalars(select(Position).where(Position.session_id == session.id)))
    books = {CHAMPION: Portfolio.from_rows(session.cash, rows)}
    marks: Mapping = {(r.venue, r.symbol): r.last_price for r in rows if r.last_price is not None}
    funded = db.scalars(
        select(ChallengerRow)
        .where(ChallengerRow.session_id == session.id, ChallengerRow.slice_state.in_(FUNDED))
        .order_by(ChallengerRow.artifact)
    )
    for row in funded:
        book = slice_book(db, session, row)
        book.mark({p.instrument: marks.get((p.instrument.venue, p.instrument.symbol)) for p in book.positions()})
        books[row.artifact] = book
    return books


def whole_cash(db: Session, session: TradingSession) -> float:
    """The whole session's cash: the champion's book's (``sessions.cash``) plus every funded slice's."""
    funded = db.scalars(
        select(ChallengerRow).where(ChallengerRow.session_id == session.id, ChallengerRow.slice_state.in_(FUNDED))
    )
    return session.cash + sum(slice_book(db, session, row).cash for row in funded)
