"""The venue side of a venue session's protective legs (``live.venue_protection``): what a
bar's transaction decided, sent after its commit, and the market questions a leg asks.

Rules:

* **Decided in the transaction, sent after it.** :class:`LegActions` collects the cancels,
  creates and moves (cancel-replace) that the transaction committed as ``cancel_requested``
  or ``sent``; :func:`send_actions` sends them once it has committed: cancels first (a spot
  stop locks the coins an exit sells), then creates, then moves.
* **A move never leaves two stops.** On a broker without ``replace`` the new leg is created
  only once the cancel of the one it replaces came back ``canceled``; otherwise it is
  ``rejected`` unsent.
* **A call that raises is ``unknown``**, never sent again; every state that came back is
  applied (``apply``) in one transaction, and an ``unknown`` one halts its symbol
  (``live.reconcile.halt_if_unknown``).
* **Market questions** (:func:`takes_natively`, :func:`at_tick`, :func:`load_markets`) ask
  the broker's ccxt markets; through a router (a session on several venues,
  ``live.brokers.router``) those of the symbol's venue, with the venue's symbol; a broker
  without them (the paper broker) takes every leg as it is and rounds prices to 10 decimals.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from live.brokers.base import Broker, OrderRequest, OrderState
from live.brokers.ccxt_orders import venue_order
from live.reconcile import halt_if_unknown
from tradeloop.errors import BrokerError
from tradeloop.ops import OpsStore
from tradeloop.trading import OrderStatus

log = logging.getLogger(__name__)
S = OrderStatus
Apply = Callable[[Session, OrderState], None]


@dataclass(slots=True)
class LegActions:
    """What one transaction committed for the venue: cancels, creates, moves (old, new)."""

    cancels: list[OrderRequest] = field(default_factory=list)
    submits: list[OrderRequest] = field(default_factory=list)
    replaces: list[tuple[OrderRequest, OrderRequest]] = field(default_factory=list)


async def send_actions(actions: LegActions, *, broker: Broker, store: OpsStore, session_id: int, apply: Apply) -> None:
    """Cancels first (a spot stop locks what an exit sells), then creates, then moves."""
    states: list[OrderState] = []
    for request in actions.cancels:
        states.append(await _call(request, partial(broker.cancel, request), session_id=session_id))
    for request in actions.submits:
        states.append(await _call(request, partial(broker.submit, request), session_id=session_id))
    for old, new in actions.replaces:
        replace = getattr(broker, "replace", None)
        if replace is None:  # cancel, then create only once the cancel is proven
            gone = await _call(old, partial(broker.cancel, old), session_id=session_id)
            states.append(gone)
            if gone.status == S.CANCELED.value:
                states.append(await _call(new, partial(broker.submit, new), session_id=session_id))
            else:
                why = "not sent: the cancel of the stop it replaces is not proven"
                states.append(OrderState(new.client_order_id, S.REJECTED.value, reason=why))
            continue
        try:
            states.extend(await replace(old, new))
        except Exception as exc:
            log.exception("session %d: moving %s failed", session_id, old.client_order_id)
            states.append(OrderState(new.client_order_id, S.UNKNOWN.value, reason=f"replace failed: {exc}"[:200]))
    if not states:
        return
    with store.transaction() as db:
        for state in states:
            apply(db, state)
            halt_if_unknown(db, session_id, state)


async def _call(request: OrderRequest, call: Callable[[], Awaitable[OrderState]], *, session_id: int) -> OrderState:
    try:
        return await call()
    except Exception as exc:
        log.exception("session %d: %s failed", session_id, request.client_order_id)
        return OrderState(request.client_order_id, S.UNKNOWN.value, reason=f"failed: {exc}; never resent"[:200])


def _market(broker: Broker, symbol: str) -> tuple[Any, str]:
    """The broker that knows ``symbol``'s market, and its symbol there (a router's venue's)."""
    route = getattr(broker, "venue_broker", None)
    return route(symbol) if route is not None else (broker, symbol)


async def load_markets(broker: Broker) -> None:
    """Load the broker's ccxt markets, each venue's behind a router (nothing for a broker without them)."""
    for each in getattr(broker, "brokers", {}).values() or [broker]:
        exchange = getattr(each, "exchange", None)
        if exchange is not None:
            await exchange.load_markets()


def takes_natively(broker: Broker, request: OrderRequest, *, session_id: int) -> bool:
    """Whether the market takes ``request`` as it is (a broker without markets: assumed)."""
    venue, symbol = _market(broker, request.symbol)
    exchange, unified = getattr(venue, "exchange", None), getattr(venue, "unified", None)
    if exchange is None or unified is None:
        return True
    try:
        venue_order(exchange, dataclasses.replace(request, symbol=symbol), unified(symbol), reference_price=None)
    except BrokerError as exc:
        log.info("session %d: %s is engine-managed: %s", session_id, request.client_order_id, exc)
        return False
    return True


def at_tick(broker: Broker, symbol: str, price: float) -> float:
    """``price`` at ``symbol``'s price tick (a broker without markets: 10 decimals)."""
    venue, symbol = _market(broker, symbol)
    exchange, unified = getattr(venue, "exchange", None), getattr(venue, "unified", None)
    if exchange is None or unified is None:
        return round(price, 10)
    return float(exchange.price_to_precision(unified(symbol), price))
