"""A broker on a real venue through ccxt (async): every order type the market lists natively,
with client order ids, cancels, and the account reads that reconciliation needs.

This module sends (creates, cancels, cancel-replace); what it asks the venue (an order by
client id, the proof of an unknown create's outcome, the account, the market rules) is
:class:`live.brokers.ccxt_reads.CcxtReader`, which :class:`CcxtBroker` extends.

* Every order carries its deterministic client order id (``clientOrderId``). Venues check
  its uniqueness only among *open* orders (Binance does), so a filled order's id would be
  accepted again: the id is no protection against a second create, this module's rule is.
* What is sent is built by ``live.brokers.ccxt_orders`` (native types only, amounts to the
  market's step, prices to its tick); what comes back is an ``OrderStatus`` value:
  ``acknowledged`` (open), ``partially_filled``, ``filled``, ``canceled``, ``expired``,
  ``rejected``, or ``unknown`` (sent, not proven).
* **A create goes out at most once** (cancel-replace included: it creates). A create that
  times out, loses its connection or gets a 5xx / -1001 / -1007 has an unknown outcome; it
  stays ``unknown`` until the venue proves otherwise (:meth:`CcxtBroker.resolve`, whose
  three steps ``live.brokers.ccxt_reads`` states); a read that fails there leaves it
  ``unknown`` and the engine halts the symbol (reduce-only).
* A refused create (insufficient funds, a filter, post-only that would take, a rate limit
  429/418/-1003) is ``rejected`` with the venue's message, never retried; so is an order the
  market cannot take as it is, or whose markets could not be loaded (nothing was sent).
* A cancel (:meth:`CcxtBroker.cancel`) returns ``canceled`` with the fills that came before
  it, or the state that raced it (``filled``, ``expired``); a cancel that was not confirmed
  (timeout, rate limit, venue unreachable) returns ``cancel_requested``: send it again.
  Cancels may be retried; creates never.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace as evolve

import ccxt.async_support as ccxt

from live.brokers.base import OrderRequest, OrderState, wall_ms
from live.brokers.ccxt_orders import VenueOrder, venue_order
from live.brokers.ccxt_reads import CcxtBrokerConfig, CcxtReader
from live.feeds.base import CandleBatch
from tradeloop.errors import BrokerError, VenueUnreachableError
from tradeloop.trading import OrderStatus

__all__ = ["CcxtBroker", "CcxtBrokerConfig", "cancel_replace_data"]

log = logging.getLogger(__name__)
S = OrderStatus
RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)  # refused before it was taken


def cancel_replace_data(exc: Exception) -> dict | None:
    """The ``data`` of Binance's cancel-replace error (-2021 partly failed, -2022 failed): which
    half went through. ccxt puts the body after the exchange id in the message."""
    text = str(exc)
    try:
        body = json.loads(text[text.index("{") :])
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else None


class CcxtBroker(CcxtReader):
    """Orders on a ccxt venue (module rules): each create sent at most once, cancels retried."""

    # ------------------------------------------------------------------ hooks (perpetuals override them)
    async def _reference_price(self, symbol: str) -> float | None:
        """The price a quote amount is sized at when the order has neither limit nor trigger."""
        return None

    async def _before_create(self, order: OrderRequest, symbol: str) -> None:
        """Account settings the create relies on; ``BrokerError`` refuses the order (nothing sent)."""

    # ------------------------------------------------------------------ orders
    async def submit(self, order: OrderRequest) -> OrderState:
        """Send once; ``rejected`` with the venue's reason when refused, resolved when unknown."""
        cid, symbol = order.client_order_id, self.unified(order.symbol)
        try:
            await self._read(self.exchange.load_markets)
            venue = await self._venue_order(order, symbol)
            await self._before_create(order, symbol)
        except VenueUnreachableError as exc:  # before the create: nothing went out
            reason = f"venue unreachable before the create was sent ({exc}); nothing went out"
            return OrderState(cid, S.REJECTED, reason=reason[:200])
        except BrokerError as exc:
            return OrderState(cid, S.REJECTED, reason=str(exc)[:200])
        sent_ms = wall_ms()
        try:
            reply = await self.exchange.create_order(
                venue.symbol, venue.type, venue.side, venue.amount, venue.price, venue.params
            )
        except RATE_LIMITED as exc:
            return OrderState(cid, S.REJECTED, reason=f"venue refused: {exc}"[:200])
        except ccxt.OperationFailed as exc:  # timeout, lost connection, 5xx/-1001: the outcome is unknown
            log.warning("create of %s has an unknown outcome (%s): resolving, never resending", cid, type(exc).__name__)
            return await self.resolve(order, since_ms=sent_ms)
        except ccxt.ExchangeError as exc:  # refused: insufficient funds, a filter, post-only, duplicate id, ...
            return OrderState(cid, S.REJECTED, reason=str(exc)[:200])
        return await self._accepted(order, symbol, reply)

    async def _accepted(self, order: OrderRequest, symbol: str, reply: dict) -> OrderState:
        try:
            if reply.get("status") is None:  # OKX acknowledges a create with ids only: ask for the order (a read)
                found = await self.query(order)
                if found is not None:
                    return found
            return await self._state(order, symbol, reply)
        except VenueUnreachableError as exc:  # accepted, its fills not readable yet: the venue check reads them
            reason = f"accepted; fills not read yet ({exc})"
            return OrderState(
                order.client_order_id, S.ACKNOWLEDGED, venue_order_id=str(reply.get("id")), reason=reason[:200]
            )

    async def _venue_order(self, order: OrderRequest, symbol: str) -> VenueOrder:
        if self.exchange.markets is None or symbol not in self.exchange.markets:
            raise BrokerError(f"order {order.client_order_id}: {self.venue} lists no market {symbol}")
        needs_price = order.quantity is None and order.price is None and order.trigger_price is None
        spot_buy = order.side == "buy" and not self.exchange.market(symbol).get("contract")
        at = await self._reference_price(symbol) if needs_price and not spot_buy else None
        return venue_order(self.exchange, order, symbol, reference_price=at)

    async def cancel(self, order: OrderRequest) -> OrderState:
        """Cancel an open order: ``canceled`` (with its fills so far), the state that raced the
        cancel (``filled``, ``expired``, ...), or ``cancel_requested`` when it was not confirmed."""
        cid, symbol = order.client_order_id, self.unified(order.symbol)
        try:
            await self._read(self.exchange.load_markets)
        except VenueUnreachableError as exc:
            return OrderState(cid, S.CANCEL_REQUESTED, reason=f"venue unreachable ({exc}); cancel not sent"[:200])
        try:
            params = {"clientOrderId": self.client_id(cid)} | self._lookup(order)
            reply = await self.exchange.cancel_order(None, symbol, params)
        except ccxt.OrderNotFound as exc:  # not open any more: filled, expired or canceled before the cancel
            return await self._current(order, symbol, reason=f"not open at the cancel ({exc})", pending=False)
        except ccxt.OperationFailed as exc:  # timeout, 5xx, rate limit: it may or may not have been canceled
            return await self._current(
                order, symbol, reason=f"cancel not confirmed ({type(exc).__name__})", pending=True
            )
        except ccxt.ExchangeError as exc:
            return await self._current(order, symbol, reason=f"cancel refused ({exc})", pending=True)
        state = await self._state(order, symbol, reply)
        if state.status in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED):  # a reply without the order's status
            return await self._current(order, symbol, reason="", pending=True)
        return state

    async def _current(self, order: OrderRequest, symbol: str, *, reason: str, pending: bool) -> OrderState:
        """The order as the venue shows it after a cancel; still open and ``pending``: the cancel
        is not done (``cancel_requested``)."""
        cid = order.client_order_id
        try:
            found = await self.query(order)
        except VenueUnreachableError as exc:
            status = S.CANCEL_REQUESTED if pending else S.UNKNOWN
            return OrderState(cid, status, reason=f"{reason}; venue unreachable ({exc})"[:200])
        if found is None:
            return OrderState(cid, S.UNKNOWN, reason=f"{reason}; the venue does not know the order"[:200])
        if pending and found.status in (S.ACKNOWLEDGED, S.PARTIALLY_FILLED):
            return evolve(found, status=S.CANCEL_REQUESTED, reason=f"{reason}; still open: cancel again"[:200])
        return evolve(found, reason=reason[:200])

    async def replace(self, old: OrderRequest, new: OrderRequest) -> tuple[OrderState, OrderState]:
        """Cancel ``old`` and create ``new`` in its place: one cancel-replace request on Binance
        spot (``STOP_ON_FAILURE``: no new order unless the cancel went through), a cancel then a
        create elsewhere. Returns both states; ``new`` is never sent twice."""
        symbol = self.unified(new.symbol)
        try:
            await self._read(self.exchange.load_markets)
            venue = await self._venue_order(new, symbol)
        except VenueUnreachableError as exc:
            pending = OrderState(old.client_order_id, S.CANCEL_REQUESTED, reason=f"venue unreachable ({exc})"[:200])
            return pending, OrderState(new.client_order_id, S.REJECTED, reason="venue unreachable; nothing went out")
        except BrokerError as exc:
            return await self._current(old, symbol, reason="", pending=False), OrderState(
                new.client_order_id, S.REJECTED, reason=str(exc)[:200]
            )
        one_request = self.venue == "binance" and self.exchange.market(symbol).get("spot")
        if self.unified(old.symbol) != symbol or not one_request:
            return await self._cancel_then_submit(old, new)
        params = {k: v for k, v in venue.params.items() if k != "triggerPrice"} | {
            "cancelOrigClientOrderId": old.client_order_id
        }
        if venue.conditional:
            params["stopPrice"] = venue.params["triggerPrice"]
        sent_ms = wall_ms()
        try:
            reply = await self.exchange.edit_order(
                None, symbol, venue.type, venue.side, venue.amount, venue.price, params
            )
        except (ccxt.ExchangeError, ccxt.OperationFailed) as exc:
            return await self._replace_failed(old, new, symbol, exc, sent_ms=sent_ms)
        return await self._current(old, symbol, reason="", pending=False), await self._accepted(new, symbol, reply)

    async def _replace_failed(
        self, old: OrderRequest, new: OrderRequest, symbol: str, exc: Exception, *, sent_ms: int
    ) -> tuple[OrderState, OrderState]:
        data = cancel_replace_data(exc)
        if data is None:
            if isinstance(exc, ccxt.OperationFailed) and not isinstance(exc, RATE_LIMITED):  # unknown: both queried
                log.warning(
                    "cancel-replace %s -> %s: unknown outcome (%s)", old.client_order_id, new.client_order_id, exc
                )
                return await self._current(old, symbol, reason="cancel-replace unanswered", pending=True), (
                    await self.resolve(new, since_ms=sent_ms)
                )
            refused = OrderState(new.client_order_id, S.REJECTED, reason=f"venue refused: {exc}"[:200])
            return await self._current(old, symbol, reason=f"cancel-replace refused ({exc})", pending=False), refused
        cancel, created = data.get("cancelResponse") or {}, data.get("newOrderResponse") or {}
        if data.get("cancelResult") == "SUCCESS":
            old_state = await self._current(old, symbol, reason="", pending=False)
        else:
            old_state = await self._current(old, symbol, reason=f"cancel refused: {cancel.get('msg')}", pending=False)
        if data.get("newOrderResult") == "SUCCESS":
            market = self.exchange.market(symbol)
            return old_state, await self._accepted(new, symbol, self.exchange.parse_order(created, market))
        why = created.get("msg") or f"not attempted: the cancel failed ({cancel.get('msg')})"
        return old_state, OrderState(new.client_order_id, S.REJECTED, reason=f"venue: {why}"[:200])

    async def _cancel_then_submit(self, old: OrderRequest, new: OrderRequest) -> tuple[OrderState, OrderState]:
        gone = await self.cancel(old)
        if gone.status not in (S.CANCELED, S.EXPIRED):
            reason = f"not sent: {old.client_order_id} is {gone.status}, not canceled"
            return gone, OrderState(new.client_order_id, S.REJECTED, reason=reason)
        return gone, await self.submit(new)

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        if not sent:  # committed, never sent: this is its one create
            return await self.submit(order)
        return await self.resolve(order, since_ms=since_ms)

    # ------------------------------------------------------------------ the rest of Broker
    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        return []  # fills arrive with the create reply, through resolve, or through reconciliation

    async def close(self) -> None:
        await self.exchange.close()
