"""A session's trading records: orders, fills, positions, equity marks and its audit log.

Each is the session owner's (or an admin's) to read: another user's session is a 404
(``api.routers.sessions`` rule 1). Lists are paged and filtered by time (``api.paging``;
``tradeloop.ops.session_reads`` says which time each record is filtered by).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Context, Viewer
from api.paging import IdPage, Paged, TsPage, paged
from api.timequery import SessionId, owned_session
from tradeloop.challengers.books import CHAMPION, session_books
from tradeloop.ops.session_reads import SessionReads
from tradeloop.trading import OrderStatus

router = APIRouter(prefix="/sessions/{session_id}", tags=["session records"])
Symbol = Annotated[str | None, Query(max_length=50, description="only this symbol", examples=["BTC-USD"])]


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    client_order_id: str
    venue: str = Field(description="where it was sent: the exchange id, or paper")
    symbol: str
    side: str
    intent: str = Field(description="enter_long, exit_long, stop_loss, ... (tradeloop.trading.OrderIntentKind)")
    order_type: str
    time_in_force: str
    status: str = Field(description="tradeloop.trading.OrderStatus")
    quantity: float | None = Field(description="base amount (exits)")
    quote_amount: float | None = Field(description="quote to spend (entries)")
    price: float | None = Field(description="limit price")
    trigger_price: float | None
    reduce_only: bool
    parent_id: int | None = Field(description="the entry a protective order guards")
    decided_ts: int = Field(description="open time of the bar whose close decided it (epoch ms)")
    sent_at_ms: int | None
    venue_order_id: str | None
    filled_qty: float
    avg_price: float | None
    fee: float
    created_at: datetime
    updated_at: datetime


class FillOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    order_id: int
    venue: str
    symbol: str
    trade_id: str
    side: str
    quantity: float
    price: float
    fee: float
    ts: int = Field(description="when it filled (epoch ms)")


class PositionOut(BaseModel):
    book: str = Field(
        default=CHAMPION,
        description="whose book holds it: champion (the session's own), or the artifact of a challenger trading a "
        "capital slice",
    )
    instrument: str = Field(examples=["coinbase:BTC-USD"])
    venue: str
    symbol: str
    quantity: float = Field(description="signed: negative is short")
    entry_price: float | None = Field(description="null when flat")
    entry_ts: int | None
    mark_price: float = Field(description="the last price marked (the entry price before one)")
    unrealized_pnl: float = Field(description="quantity * (mark - entry) - the entry fee paid; 0 when flat")
    realized_pnl: float
    liquidation_price: float | None = Field(description="a perpetual's, as the venue last reported it")


class EquityOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    ts: int = Field(description="the bar's open time (epoch ms)")
    equity: float
    cash: float


class AuditOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    event: str = Field(examples=["session_paused"])
    order_id: int | None
    actor: str | None = Field(description="who: a user of the API (with the key's id), or user@host")
    detail: dict[str, Any]


@router.get("/orders", response_model=Paged[OrderOut], summary="The session's orders, by id (time: decided_ts)")
def list_orders(
    session_id: SessionId,
    principal: Viewer,
    ctx: Context,
    page: IdPage,
    status: Annotated[list[OrderStatus] | None, Query(description="only these statuses (repeat)")] = None,
    symbol: Symbol = None,
) -> Paged[OrderOut]:
    session = owned_session(ctx, principal, session_id)
    statuses = [str(s) for s in status] if status else None
    rows = SessionReads(ctx.store).orders(session.id, page, statuses=statuses, symbol=symbol)
    return paged(rows, page, OrderOut.model_validate, lambda r: r.id)


@router.get("/fills", response_model=Paged[FillOut], summary="The session's fills, by id (time: ts)")
def list_fills(
    session_id: SessionId, principal: Viewer, ctx: Context, page: IdPage, symbol: Symbol = None
) -> Paged[FillOut]:
    session = owned_session(ctx, principal, session_id)
    rows = SessionReads(ctx.store).fills(session.id, page, symbol=symbol)
    return paged(rows, page, FillOut.model_validate, lambda r: r.id)


@router.get(
    "/positions",
    response_model=list[PositionOut],
    summary="The session's positions with marks and P&L, each tagged with its book (one per book and instrument)",
)
def list_positions(
    session_id: SessionId,
    principal: Viewer,
    ctx: Context,
    include_flat: Annotated[bool, Query(description="also instruments held before and flat now")] = False,
) -> list[PositionOut]:
    session = owned_session(ctx, principal, session_id)
    rows = ctx.store.positions(session.id)
    with ctx.store.transaction() as db:
        books = session_books(db, session)  # marks and P&L as the engine computes them, every book
    out = []
    for name, book in books.items():
        for held in book.positions(include_flat=include_flat):
            row = rows.get(held.instrument.symbol) if name == CHAMPION else None
            out.append(
                PositionOut(
                    book=name,
                    instrument=str(held.instrument),
                    venue=held.instrument.venue,
                    symbol=held.instrument.symbol,
                    quantity=held.quantity,
                    entry_price=None if held.is_flat else held.entry_price,
                    entry_ts=held.entry_ts,
                    mark_price=held.mark_price,
                    unrealized_pnl=held.unrealized_pnl,
                    realized_pnl=held.realized_pnl,
                    liquidation_price=row.liquidation_price if row is not None else None,
                )  # fmt: skip
            )
    return out


@router.get("/equity", response_model=Paged[EquityOut], summary="The session's equity marks, by bar (time: ts)")
def list_equity(session_id: SessionId, principal: Viewer, ctx: Context, page: TsPage) -> Paged[EquityOut]:
    session = owned_session(ctx, principal, session_id)
    rows = SessionReads(ctx.store).equity(session.id, page)
    return paged(rows, page, EquityOut.model_validate, lambda r: r.ts)


@router.get("/audit", response_model=Paged[AuditOut], summary="The session's audit log, by id (time: at)")
def list_audit(
    session_id: SessionId,
    principal: Viewer,
    ctx: Context,
    page: IdPage,
    event: Annotated[
        list[str] | None, Query(description="only these events (repeat)", examples=["order_filled"])
    ] = None,
) -> Paged[AuditOut]:
    session = owned_session(ctx, principal, session_id)
    rows = SessionReads(ctx.store).audit(session.id, page, events=event)
    return paged(rows, page, AuditOut.model_validate, lambda r: r.id)
