"""From a bar's decided signals to order rows, and from fills to positions and cash.

The rules mirror the backtest kernel (long only, spot): an exit flag on a long position
sells all of it; an entry flag on a flat symbol (or one exiting on the same bar) buys for
``fraction * equity at the close``, capped by cash at the fill. Positions and cash change
only through stored fills, so replaying a fill twice changes nothing.

An order's create goes out at most once: ``sent_at_ms`` is committed *before* the create is
sent (:func:`mark_sent`), so after a crash an order with it set (or any status past ``new``)
may have reached the venue and is only resolved, never sent again (:func:`send_record`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live.brokers.base import OrderRequest, OrderState
from tradeloop.ops import Fill, OpsStore, Order, Position
from tradeloop.portfolio import PositionState
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG
from tradeloop.trading import (
    InstrumentId,
    OrderIntent,
    OrderIntentKind,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    can_transition,
    check_transition,
)

EXITS_LONG = EXIT_LONG | ENTER_SHORT
log = logging.getLogger(__name__)


def client_order_id(session_id: int, ts: int, symbol: str, intent: str) -> str:
    """Deterministic, at most 36 characters of [A-Za-z0-9-] (what Binance and most venues accept)."""
    plain = f"tl{session_id}-{ts}-{''.join(c for c in symbol if c.isalnum())}-{intent[:2]}"
    if len(plain) <= 36:
        return plain
    return f"tl{session_id}-" + hashlib.sha1(plain.encode()).hexdigest()[: 33 - len(str(session_id))]


def intents(
    flags: int, *, instrument: InstrumentId, position: float, equity: float, fraction: float, price: float
) -> list[OrderIntent]:
    """Orders one symbol's signal asks for, given its position and its ``price`` at the close."""
    out = []
    exiting = position > 0.0 and (flags & EXITS_LONG) != 0
    if exiting:
        out.append(
            OrderIntent(
                instrument=instrument,
                side=OrderSide.SELL,
                kind=OrderIntentKind.EXIT_LONG,
                quantity=position,
                reference_price=price,
                reduce_only=True,
            )
        )
    wants_long = (flags & ENTER_LONG) != 0 and (flags & ENTER_SHORT) == 0
    if wants_long and (position == 0.0 or exiting):
        out.append(
            OrderIntent(
                instrument=instrument,
                side=OrderSide.BUY,
                kind=OrderIntentKind.ENTER_LONG,
                quote_amount=fraction * equity,
                reference_price=price,
            )
        )
    return out


def new_order(db: Session, *, session_id: int, venue: str, ts: int, intent: OrderIntent) -> Order:
    """The order row for ``intent`` (status ``new``), added to ``db``: stored before it is sent."""
    symbol = intent.instrument.symbol
    order = Order(
        session_id=session_id,
        client_order_id=client_order_id(session_id, ts, symbol, intent.kind),
        venue=venue,
        symbol=symbol,
        side=intent.side.value,
        intent=intent.kind.value,
        quantity=intent.quantity,
        quote_amount=intent.quote_amount,
        order_type=intent.order_type.value,
        time_in_force=intent.time_in_force.value,
        price=intent.price,
        trigger_price=intent.trigger_price,
        reduce_only=intent.reduce_only,
        decided_ts=ts,
        status=OrderStatus.NEW.value,
    )
    db.add(order)
    return order


def request_of(order: Order) -> OrderRequest:
    return OrderRequest(
        order.client_order_id,
        order.symbol,
        order.side,
        order.quantity,
        order.quote_amount,
        order_type=OrderType(order.order_type or OrderType.MARKET),
        time_in_force=TimeInForce(order.time_in_force or TimeInForce.GTC),
        price=order.price,
        trigger_price=order.trigger_price,
        reduce_only=bool(order.reduce_only),
    )


def mark_sent(db: Session, orders: list[Order], *, now_ms: int) -> None:
    """Record that these orders' creates are about to go out (commit before sending)."""
    for order in orders:
        check_transition(order.status, OrderStatus.SENT, client_order_id=order.client_order_id)
    db.execute(
        update(Order).where(Order.id.in_([o.id for o in orders])).values(sent_at_ms=now_ms, status=OrderStatus.SENT)
    )
    for order in orders:
        order.sent_at_ms, order.status = now_ms, OrderStatus.SENT.value


def send_record(order: Order) -> tuple[bool, int]:
    """(whether its create may have gone out, the earliest wall-clock ms it could have)."""
    sent = order.sent_at_ms is not None or order.status != OrderStatus.NEW
    if order.sent_at_ms is not None:
        return sent, order.sent_at_ms
    created = order.created_at if order.created_at.tzinfo else order.created_at.replace(tzinfo=UTC)
    return sent, int(created.timestamp() * 1000)  # committed before any send


LEGACY_STATUS = {"submitted": OrderStatus.ACKNOWLEDGED}  # what brokers said before the full lifecycle


def apply_state(db: Session, state: OrderState, *, session_id: int, venue: str) -> list[Fill]:
    """Store what the venue says about an order; returns the new fills (the caller applies them
    to its ``tradeloop.portfolio.Portfolio`` and stores the position: :func:`store_position`).

    Fills already stored (same ``venue``, symbol, trade id) are skipped: at most once. The new status must be one the
    order state machine allows from the stored one; an impossible report (a filled order said
    to be open again) changes no status: it is written to the audit log as
    ``order_transition_refused`` (fills it carries are still stored: money moved).
    """
    order = db.scalar(select(Order).where(Order.client_order_id == state.client_order_id))
    if order is None:
        return []
    new = []
    for f in state.fills:
        fill = Fill(
            order_id=order.id,
            session_id=session_id,
            venue=venue,
            symbol=f.symbol,
            trade_id=f.trade_id,
            side=f.side,
            quantity=f.quantity,
            price=f.price,
            fee=f.fee,
            ts=f.ts,
        )
        if not OpsStore.add_fill(db, fill):
            continue
        new.append(fill)
        total = order.filled_qty + fill.quantity
        order.avg_price = ((order.avg_price or 0.0) * order.filled_qty + fill.price * fill.quantity) / total
        order.filled_qty = total
        order.fee += fill.fee
        OpsStore.audit(
            db,
            "order_filled",
            session_id=session_id,
            order_id=order.id,
            detail={"trade_id": fill.trade_id, "qty": fill.quantity, "price": fill.price, "fee": fill.fee},
        )
    status = LEGACY_STATUS.get(state.status, state.status)
    if status != order.status:
        if not can_transition(order.status, status):
            OpsStore.audit(
                db,
                "order_transition_refused",
                session_id=session_id,
                order_id=order.id,
                detail={"from": order.status, "to": status, "reason": state.reason[:200]},
            )
            log.error("order %s: %s -> %s refused (state machine)", order.client_order_id, order.status, status)
            return new
        order.status = str(OrderStatus(status))
        if state.venue_order_id:
            order.venue_order_id = state.venue_order_id
        if status != OrderStatus.FILLED:
            OpsStore.audit(
                db,
                f"order_{status}",
                session_id=session_id,
                order_id=order.id,
                detail={"reason": state.reason} if state.reason else {},
            )
    elif state.venue_order_id and not order.venue_order_id:
        order.venue_order_id = state.venue_order_id
    return new


def store_position(db: Session, session_id: int, held: PositionState) -> None:
    """Write a portfolio position to its row (``session``, venue, symbol), creating it if new."""
    inst = held.instrument
    row = db.get(Position, (session_id, inst.venue, inst.symbol))
    if row is None:
        row = Position(session_id=session_id, venue=inst.venue, symbol=inst.symbol)
        db.add(row)
    row.quantity, row.entry_price, row.entry_fee = held.quantity, held.entry_price, held.entry_fee
    row.entry_ts, row.realized_pnl = held.entry_ts, held.realized_pnl
    if held.last_price is not None:
        row.last_price = held.last_price
