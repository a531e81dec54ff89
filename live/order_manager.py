"""Order manager: the engine's orders after they were sent (age, cancel, cancel-replace).

Rules:

1. **Every transition is persisted before the action it leads to.** A cancel is committed as
   ``cancel_requested`` (and audited ``order_cancel_requested``) before the broker is asked;
   a crash in between leaves an order the next reconciliation resolves, never one canceled
   without a record.
2. **Maximum age.** An order still resting on the book (``acknowledged`` or
   ``partially_filled``) whose decision bar is more than ``max_order_age_ms`` of *bar time*
   before the current bar is canceled (decision code never reads the wall clock, so a
   replay cancels exactly where a live run would). ``None`` turns it off. A protective leg
   (stop-loss, trailing stop, take-profit of a position: ``parent_id`` set) is never aged out. An order that is
   ``cancel_requested`` already is asked again each bar until the venue proves its end.
3. **The venue decides.** What the broker answers goes through ``live.orders.apply_state``
   (the state machine): ``canceled`` with the fills it had, a fill that raced the cancel, or
   still ``cancel_requested`` when the venue did not confirm.
4. **Cancel-replace** (:func:`replace_order`) cancels first and stores the replacement only
   once the cancel is proven: never two live orders for one intent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker, OrderState
from live.orders import request_of
from tradeloop.ops import OpsStore, Order
from tradeloop.trading import OrderStatus, check_transition

log = logging.getLogger(__name__)
S = OrderStatus
RESTING = (S.ACKNOWLEDGED.value, S.PARTIALLY_FILLED.value)
Apply = Callable[[Session, OrderState], None]


def stale_orders(db: Session, session_id: int, *, now_ts: int, max_age_ms: int) -> list[Order]:
    """Orders resting longer than ``max_age_ms`` of bar time, and those whose cancel is pending."""
    rows = db.scalars(
        select(Order).where(
            Order.session_id == session_id,
            Order.status.in_((*RESTING, S.CANCEL_REQUESTED.value)),
        )
    )
    return [
        o
        for o in rows
        if o.parent_id is None  # a protective leg lives as long as its position (live.protection)
        and (o.status == S.CANCEL_REQUESTED or now_ts - o.decided_ts > max_age_ms)
    ]


def request_cancel(db: Session, order: Order, *, reason: str) -> None:
    """Persist ``cancel_requested`` (state machine checked) with its audit row: before the cancel."""
    if order.status == S.CANCEL_REQUESTED:
        return
    check_transition(order.status, S.CANCEL_REQUESTED, client_order_id=order.client_order_id)
    order.status = S.CANCEL_REQUESTED.value
    OpsStore.audit(
        db,
        "order_cancel_requested",
        session_id=order.session_id,
        order_id=order.id,
        detail={"client_order_id": order.client_order_id, "reason": reason[:200]},
    )


async def cancel_stale(
    store: OpsStore, broker: Broker, session_id: int, *, now_ts: int, max_age_ms: int | None, apply: Apply
) -> list[OrderState]:
    """Cancel every order older than ``max_age_ms`` (module rules 1-3); the broker's answers."""
    if max_age_ms is None:
        return []
    with store.transaction() as db:
        orders = stale_orders(db, session_id, now_ts=now_ts, max_age_ms=max_age_ms)
        for order in orders:
            request_cancel(db, order, reason=f"open for more than {max_age_ms} ms of bar time")
        requests = [request_of(o) for o in orders]
    states = []
    for request in requests:
        try:
            states.append(await broker.cancel(request))
        except Exception as exc:  # noqa: BLE001 - the cancel may have reached the venue: ask again next bar
            log.warning("session %d: cancel of %s failed: %s", session_id, request.client_order_id, exc)
    with store.transaction() as db:
        for state in states:
            apply(db, state)
    return states


async def replace_order(
    store: OpsStore,
    broker: Broker,
    order: Order,
    *,
    make_replacement: Callable[[Session], Order],
    apply: Apply,
    send: Callable[[list[Order]], Awaitable[None]],
) -> Order | None:
    """Cancel ``order``, then (only once the venue proved it canceled) store and send the order
    ``make_replacement`` builds; ``None`` when the cancel is not proven (nothing new is stored)."""
    with store.transaction() as db:
        row = db.get(Order, order.id)
        if row is None:
            return None
        request_cancel(db, row, reason="replaced")
        request = request_of(row)
    state = await broker.cancel(request)
    with store.transaction() as db:
        apply(db, state)
        if state.status != S.CANCELED:
            return None
        replacement = make_replacement(db)
        db.flush()
    await send([replacement])
    return replacement
