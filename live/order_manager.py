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
5. **Kill switch.** A trip cancels the session's resting limit entries
   (:func:`cancel_resting_entries`, in the bar's transaction, before its orders are sent);
   protective legs and exits stay. The cancels go out after the bar's commit, with the stale ones.
6. **Limit entries on a venue** (:func:`expire_entries`, after :func:`cancel_stale`) rest as
   in the backtest (``tradeloop.backtest.kernel`` rule 4): ``limit_ttl_bars`` of their symbol's
   candles after the decision bar, counted in the engine's rolling window, so a restart counts
   the same. After the bar that completes them, or the first bar with a new signal of the
   symbol (any flag: the kernel cancels it at the next candle, before it could fill), the entry
   is canceled through rules 1-3; what filled stays (its legs arm from the filled quantity:
   ``live.venue_protection``). An entry whose decision bar has left the window has rested all
   of the window's candles (``window_bars``): it expires then, whatever a longer TTL says.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable

import polars as pl
from sqlalchemy import select
from sqlalchemy.orm import Session

from live.brokers.base import Broker, OrderRequest, OrderState
from live.entries import DecisionListener
from live.orders import request_of
from tradeloop.backtest import BacktestConfig
from tradeloop.ops import OpsStore, Order
from tradeloop.trading import OrderStatus, OrderType, can_transition, check_transition

log = logging.getLogger(__name__)
S = OrderStatus
RESTING = (S.ACKNOWLEDGED.value, S.PARTIALLY_FILLED.value)
Apply = Callable[[Session, OrderState], None]


def stale_orders(db: Session, session_id: int, *, now_ts: int, max_age_ms: int | None) -> list[Order]:
    """Orders resting longer than ``max_age_ms`` of bar time (``None``: none), and those whose
    cancel is pending (a kill switch's, say: rule 5)."""
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
        and (o.status == S.CANCEL_REQUESTED or (max_age_ms is not None and now_ts - o.decided_ts > max_age_ms))
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


def cancel_resting_entries(
    db: Session, session_id: int, *, reason: str, capital_slice: str | None = None
) -> list[Order]:
    """Rule 5: ``cancel_requested`` for every limit entry still working (sent, resting or
    partly filled); the broker is asked after the commit (:func:`cancel_stale`).
    ``capital_slice``: only that slice's (``live.slices``: a slice that closes); None: every book's."""
    query = select(Order).where(
        Order.session_id == session_id,
        Order.status.in_((S.SENT.value, *RESTING)),
        Order.order_type == OrderType.LIMIT.value,
        Order.parent_id.is_(None),
        Order.reduce_only.is_(False),
    )
    if capital_slice is not None:
        query = query.where(Order.capital_slice == capital_slice)
    rows = db.scalars(query)
    orders = [o for o in rows if can_transition(o.status, S.CANCEL_REQUESTED)]
    for order in orders:
        request_cancel(db, order, reason=reason)
    return orders


async def cancel_stale(
    store: OpsStore, broker: Broker, session_id: int, *, now_ts: int, max_age_ms: int | None, apply: Apply
) -> list[OrderState]:
    """Cancel every order older than ``max_age_ms`` and ask again about each pending cancel
    (module rules 1-3, 5); the broker's answers."""
    with store.transaction() as db:
        orders = stale_orders(db, session_id, now_ts=now_ts, max_age_ms=max_age_ms)
        for order in orders:
            request_cancel(db, order, reason=f"open for more than {max_age_ms} ms of bar time")
        if not orders:
            return []
        requests = [request_of(o) for o in orders]
    return await _cancel_each(store, broker, session_id, requests, apply=apply)


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


def candles_since(window: pl.DataFrame, symbol: str, *, after_ts: int, now_ts: int) -> tuple[int, bool]:
    """(the symbol's candles in ``window`` with ``after_ts < ts <= now_ts``, whether the window
    still reaches back to ``after_ts``: holds one of the symbol's candles at or before it)."""
    if window.is_empty():
        return 0, False
    ts = window.filter(pl.col("symbol") == symbol)["ts"]
    return int(((ts > after_ts) & (ts <= now_ts)).sum()), bool((ts <= after_ts).any())


def expired_entries(
    db: Session, session_id: int, *, now_ts: int, window: pl.DataFrame, ttl_bars: int, signalled: Iterable[str] = ()
) -> list[tuple[Order, str]]:
    """Rule 6: each resting limit entry that is over, with the reason its cancel records."""
    rows = db.scalars(
        select(Order).where(
            Order.session_id == session_id,
            Order.status.in_(RESTING),
            Order.order_type == OrderType.LIMIT.value,
            Order.parent_id.is_(None),
        )
    )
    replaced, out = set(signalled), []
    for order in rows:
        if order.reduce_only:
            continue
        rested, reaches_back = candles_since(window, order.symbol, after_ts=order.decided_ts, now_ts=now_ts)
        if order.decided_ts < now_ts and order.symbol in replaced:
            out.append((order, f"a new signal of {order.symbol} replaced it"))
        elif rested >= ttl_bars or (rested and not reaches_back):
            out.append((order, f"limit entry not filled in {rested} candle(s) of {order.symbol} (limit_ttl_bars)"))
    return out


async def expire_entries(
    store: OpsStore,
    broker: Broker,
    session_id: int,
    *,
    now_ts: int,
    window: pl.DataFrame,
    config: BacktestConfig,
    signalled: Iterable[str] = (),
    apply: Apply,
) -> list[OrderState]:
    """Cancel the venue's limit entries that are over (rule 6) after the bar ``now_ts``, whose
    candles (and the ones before) ``window`` holds, ``signalled``: the symbols with a signal at
    it; the broker's answers. Nothing for market entries, nor on the paper broker (its book
    replays the kernel's TTL: ``live.brokers.paper``)."""
    if config.entry_order != "limit" or isinstance(broker, DecisionListener):
        return []
    with store.transaction() as db:
        over = expired_entries(
            db, session_id, now_ts=now_ts, window=window, ttl_bars=config.limit_ttl_bars, signalled=signalled
        )
        for order, reason in over:
            request_cancel(db, order, reason=reason)
        requests = [request_of(o) for o, _ in over]
    if not requests:
        return []
    return await _cancel_each(store, broker, session_id, requests, apply=apply)


async def _cancel_each(
    store: OpsStore, broker: Broker, session_id: int, requests: list[OrderRequest], *, apply: Apply
) -> list[OrderState]:
    """Ask the broker to cancel each of ``requests`` (``cancel_requested`` already committed),
    then store its answers; a cancel that raised stays pending (asked again next bar)."""
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
