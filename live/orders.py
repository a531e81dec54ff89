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
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from live.brokers.base import OrderRequest, OrderState
from tradeloop.ops import Fill, OpsStore, Order, Position
from tradeloop.strategies.signals import ENTER_LONG, ENTER_SHORT, EXIT_LONG

EXITS_LONG = EXIT_LONG | ENTER_SHORT


def client_order_id(session_id: int, ts: int, symbol: str, intent: str) -> str:
    """Deterministic, at most 36 characters of [A-Za-z0-9-] (what Binance and most venues accept)."""
    plain = f"tl{session_id}-{ts}-{''.join(c for c in symbol if c.isalnum())}-{intent[:2]}"
    if len(plain) <= 36:
        return plain
    return f"tl{session_id}-" + hashlib.sha1(plain.encode()).hexdigest()[: 33 - len(str(session_id))]


@dataclass(frozen=True)
class Intent:
    symbol: str
    side: str
    intent: str
    quantity: float | None
    quote_amount: float | None


def intents(flags: int, *, symbol: str, position: float, equity: float, fraction: float) -> list[Intent]:
    """Orders one symbol's signal asks for, given its position at the close."""
    out = []
    exiting = position > 0.0 and (flags & EXITS_LONG) != 0
    if exiting:
        out.append(Intent(symbol, "sell", "exit_long", position, None))
    wants_long = (flags & ENTER_LONG) != 0 and (flags & ENTER_SHORT) == 0
    if wants_long and (position == 0.0 or exiting):
        out.append(Intent(symbol, "buy", "enter_long", None, fraction * equity))
    return out


def new_order(db: Session, *, session_id: int, venue: str, ts: int, intent: Intent) -> Order:
    order = Order(
        session_id=session_id,
        client_order_id=client_order_id(session_id, ts, intent.symbol, intent.intent),
        venue=venue,
        symbol=intent.symbol,
        side=intent.side,
        intent=intent.intent,
        quantity=intent.quantity,
        quote_amount=intent.quote_amount,
        decided_ts=ts,
        status="new",
    )
    db.add(order)
    return order


def request_of(order: Order) -> OrderRequest:
    return OrderRequest(order.client_order_id, order.symbol, order.side, order.quantity, order.quote_amount)


def mark_sent(db: Session, orders: list[Order], *, now_ms: int) -> None:
    """Record that these orders' creates are about to go out (commit before sending)."""
    db.execute(update(Order).where(Order.id.in_([o.id for o in orders])).values(sent_at_ms=now_ms))
    for order in orders:
        order.sent_at_ms = now_ms


def send_record(order: Order) -> tuple[bool, int]:
    """(whether its create may have gone out, the earliest wall-clock ms it could have)."""
    sent = order.sent_at_ms is not None or order.status != "new"
    if order.sent_at_ms is not None:
        return sent, order.sent_at_ms
    created = order.created_at if order.created_at.tzinfo else order.created_at.replace(tzinfo=UTC)
    return sent, int(created.timestamp() * 1000)  # committed before any send


def apply_state(db: Session, state: OrderState, *, session_id: int, venue: str) -> tuple[float, list[Fill]]:
    """Store what the venue says about an order; returns (cash change, new fills).

    Fills already stored (same venue, symbol, trade id) are skipped: at most once.
    """
    order = db.scalar(select(Order).where(Order.client_order_id == state.client_order_id))
    if order is None:
        return 0.0, []
    cash_delta, new = 0.0, []
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
        cash_delta += _apply_to_position(db, session_id, fill)
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
    if state.status != order.status:
        order.status = state.status
        if state.venue_order_id:
            order.venue_order_id = state.venue_order_id
        if state.status != "filled":
            OpsStore.audit(
                db,
                f"order_{state.status}",
                session_id=session_id,
                order_id=order.id,
                detail={"reason": state.reason} if state.reason else {},
            )
    return cash_delta, new


def _apply_to_position(db: Session, session_id: int, fill: Fill) -> float:
    pos = db.get(Position, (session_id, fill.symbol))
    if pos is None:
        pos = Position(
            session_id=session_id, symbol=fill.symbol, quantity=0.0, entry_price=0.0, entry_fee=0.0, realized_pnl=0.0
        )
        db.add(pos)
    notional = fill.quantity * fill.price
    if fill.side == "buy":
        pos.entry_price = (pos.entry_price * pos.quantity + notional) / (pos.quantity + fill.quantity)
        pos.quantity += fill.quantity
        pos.entry_fee += fill.fee
        pos.entry_ts = fill.ts
        return -(notional + fill.fee)
    pos.realized_pnl += (fill.price - pos.entry_price) * fill.quantity - pos.entry_fee - fill.fee
    pos.quantity = max(0.0, pos.quantity - fill.quantity)
    if pos.quantity <= 1e-15:
        pos.quantity, pos.entry_fee = 0.0, 0.0
    return notional - fill.fee
