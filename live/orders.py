"""Order rows, and from fills to positions and cash (a bar's signals become intents in
``live.signal_intents``). Positions and cash change only through stored fills, so replaying a
fill twice changes nothing.

An entry's protective legs (``OrderIntent.protection``, ``live.protection``) are stored with
it by :func:`new_order` as child orders: one per leg, intent and order type the leg's,
reduce-only, for the entry's quantity (at the reference price for a quote amount: the broker
protects what actually filled), ``parent_id`` the entry's row, client id
``live.protection.child_order_id`` (derived from the entry's, so a broker holding the entry knows its
legs), status ``new``, with the decision bar's ATR (``entry_atr``: a venue arms them from the
fill with it, after a restart too). :func:`mark_sent` marks them sent with an entry of the paper
book: they go out as part of its create (a bracket) and stay inactive until it fills; a venue's
wait for the fill (``live.venue_protection``).

An order's create goes out at most once: ``sent_at_ms`` is committed *before* the create is
sent (:func:`mark_sent`), so after a crash an order with it set (or any status past ``new``)
may have reached the venue and is only resolved, never sent again (:func:`send_record`).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from live.brokers.base import OrderRequest, OrderState
from live.protection import child_order_id
from tradeloop.ops import Fill, OpsStore, Order, Position, TradingSession
from tradeloop.ops.store import OPEN_STATUSES
from tradeloop.portfolio import PositionState
from tradeloop.trading import (
    OrderIntent,
    OrderStatus,
    OrderType,
    TimeInForce,
    can_transition,
    check_transition,
)

log = logging.getLogger(__name__)


def client_order_id(session_id: int, ts: int, symbol: str, intent: str, *, prefix: str | None = None) -> str:
    """Deterministic, at most 36 characters of [A-Za-z0-9-] (what Binance and most venues accept),
    starting ``tl<session>-``, or ``prefix`` (a capital slice's: :func:`slice_prefix`)."""
    head = prefix or f"tl{session_id}-"
    plain = f"{head}{ts}-{''.join(c for c in symbol if c.isalnum())}-{intent[:2]}"
    if len(plain) <= 36:
        return plain
    return head + hashlib.sha1(plain.encode(), usedforsecurity=False).hexdigest()[: 36 - len(head)]


def slice_prefix(session_id: int, challenger_id: int) -> str:
    """The client id prefix of a capital slice's orders (``live.slices``): ``tl<session>c<challenger
    row id>-``, never a prefix of the champion's ``tl<session>-``; its protective legs keep it."""
    return f"tl{session_id}c{challenger_id}-"


def new_order(
    db: Session,
    *,
    session_id: int,
    venue: str,
    ts: int,
    intent: OrderIntent,
    symbol: str | None = None,
    client_id: str | None = None,
    capital_slice: tuple[str, str] | None = None,
) -> Order:
    """The order row for ``intent`` (status ``new``), added to ``db``: stored before it is sent.

    ``capital_slice``: (the challenger's artifact, its :func:`slice_prefix`) for an order of a
    capital slice (``live.slices``): tagged with the artifact, its client id (its legs' too)
    starting with the prefix; None: the champion's.

    ``symbol``: the session's name for the instrument (``live.venues``: ``okx:BTC-USDT`` off the
    session's exchange; default: the instrument's symbol). ``client_id``: the order's own
    deterministic client order id where (session, bar, symbol, intent) does not name it once
    (an arbitrage pair's leg: ``live.arbitrage_paper``); default :func:`client_order_id`. An
    entry's protective legs are added too, as its child orders (module rules), each with an
    ``order_decided`` audit row; the entry's row is returned.
    """
    symbol = symbol or intent.instrument.symbol
    order = Order(
        session_id=session_id,
        client_order_id=client_id
        or client_order_id(session_id, ts, symbol, intent.kind, prefix=capital_slice[1] if capital_slice else None),
        capital_slice=capital_slice[0] if capital_slice else None,
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
    if intent.protection:
        _add_legs(db, order, intent)
    return order


def _add_legs(db: Session, parent: Order, intent: OrderIntent) -> None:
    """The entry's protective legs as child orders of ``parent`` (module rules)."""
    db.flush()  # the entry's id
    quantity = intent.quantity
    if quantity is None:
        assert intent.quote_amount is not None and intent.reference_price  # an entry of ours has both
        quantity = intent.quote_amount / intent.reference_price
    children = [
        Order(
            session_id=parent.session_id,
            client_order_id=child_order_id(parent.client_order_id, leg.kind),
            venue=parent.venue,
            symbol=parent.symbol,
            side=intent.side.opposite.value,
            intent=leg.kind.value,
            quantity=quantity,
            order_type=leg.order_type.value,
            time_in_force=TimeInForce.GTC.value,
            trigger_price=leg.trigger_price,
            entry_atr=leg.entry_atr,
            reduce_only=True,
            parent_id=parent.id,
            capital_slice=parent.capital_slice,
            decided_ts=parent.decided_ts,
            status=OrderStatus.NEW.value,
        )
        for leg in intent.protection
    ]
    db.add_all(children)
    db.flush()
    for child in children:
        OpsStore.audit(
            db,
            "order_decided",
            session_id=parent.session_id,
            order_id=child.id,
            detail={
                "symbol": child.symbol,
                "side": child.side,
                "intent": child.intent,
                "quantity": child.quantity,
                "trigger_price": child.trigger_price,
                "parent": parent.client_order_id,
            },
        )


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


def mark_sent(db: Session, orders: list[Order], *, now_ms: int, with_legs: bool | None = None) -> None:
    """Record that these orders' creates are about to go out (commit before sending); an
    entry's protective legs still ``new`` go out with it when ``with_legs`` (default: when the
    entry is the paper book's, module rules); a venue's stay ``new`` until the entry fills
    (``live.venue_protection``), a restart's send of a never-sent entry included."""
    for order in orders:
        check_transition(order.status, OrderStatus.SENT, client_order_id=order.client_order_id)
    ids = [o.id for o in orders]
    carriers = [o.id for o in orders if (o.venue == "paper" if with_legs is None else with_legs)]
    legs: list[int] = []
    if carriers:
        legs = list(
            db.scalars(
                select(Order.id).where(
                    Order.session_id.in_({o.session_id for o in orders}),
                    Order.parent_id.in_(carriers),
                    Order.status == OrderStatus.NEW,
                )
            ).all()
        )
    db.execute(
        update(Order)
        .where(or_(Order.id.in_(ids), Order.id.in_(legs)))
        .values(sent_at_ms=now_ms, status=OrderStatus.SENT)
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


def _last_bar(db: Session, session_id: int) -> int | None:
    """The session's last committed bar: a fill stored now teaches the adaptation no earlier than
    the bar after it (``tradeloop.thresholds.feedback`` rule 2)."""
    return db.scalar(select(TradingSession.last_bar_ts).where(TradingSession.id == session_id))


LEGACY_STATUS = {"submitted": OrderStatus.ACKNOWLEDGED}  # what brokers said before the full lifecycle


def apply_state(db: Session, state: OrderState, *, session_id: int, venue: str | None = None) -> list[Fill]:
    """Store what the venue says about an order; returns the new fills (the caller applies them
    to its ``tradeloop.portfolio.Portfolio`` and stores the position: :func:`store_position`).
    Fills are stored as made on ``venue`` (default: where the order was sent, ``orders.venue``).

    Fills already stored (same ``venue``, symbol, trade id) are skipped: at most once. The new status must be one the
    order state machine allows from the stored one; an impossible report (a filled order said
    to be open again) changes no status: it is written to the audit log as
    ``order_transition_refused`` (fills it carries are still stored: money moved).
    """
    order = db.scalar(select(Order).where(Order.client_order_id == state.client_order_id))
    if order is None:
        return []
    new = []
    after_bar = _last_bar(db, session_id) if state.fills else None
    for f in state.fills:
        fill = Fill(
            order_id=order.id,
            session_id=session_id,
            venue=venue or order.venue,
            symbol=f.symbol,
            trade_id=f.trade_id,
            side=f.side,
            quantity=f.quantity,
            price=f.price,
            fee=f.fee,
            ts=f.ts,
            after_bar_ts=after_bar,
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


def orders_in_flight(store: OpsStore, session_id: int) -> int:
    """How many of the session's orders are still open: balances and positions are compared
    only when none is (a fill on its way would look like a drift)."""
    with store.transaction() as db:
        return (
            db.scalar(
                select(func.count())
                .select_from(Order)
                .where(Order.session_id == session_id, Order.status.in_(OPEN_STATUSES))
            )
            or 0
        )
