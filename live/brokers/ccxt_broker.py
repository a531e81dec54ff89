"""A broker on a real venue through ccxt (async): every order type the market lists natively,
with client order ids, cancels, and the account reads that reconciliation needs.

* Every order carries its deterministic client order id (``clientOrderId``). Venues check
  its uniqueness only among *open* orders (Binance does), so a filled order's id would be
  accepted again: the id is no protection against a second create, this module's rule is.
* What is sent is built by ``live.brokers.ccxt_orders`` (native types only, amounts to the
  market's step, prices to its tick); what comes back is an ``OrderStatus`` value:
  ``acknowledged`` (open), ``partially_filled``, ``filled``, ``canceled``, ``expired``,
  ``rejected``, or ``unknown`` (sent, not proven).
* **A create goes out at most once** (cancel-replace included: it creates). A create that
  times out, loses its connection or gets a 5xx / -1001 / -1007 has an unknown outcome; it
  stays ``unknown`` until the venue proves otherwise (:meth:`CcxtBroker.resolve`):

  1. Ask for the order by client id, repeatedly (``query_interval_s``), until at least
     ``min_queries`` answers and ``visibility_window_s`` after the send: venues show a new
     order late, so one "order not found" proves nothing.
  2. Look for it among the account's orders since the send (closed ones included).
  3. Look at the account's trades on the symbol and side since the send; each trade's
     order is fetched by its venue id. A trade that cannot be attributed keeps it unknown.
     (Skipped for stop and take-profit orders: the venue refuses one that would trigger at
     once, so such a create cannot have traded before it was visible.)

  Only when all three came back empty is the order ``rejected`` (it never reached the
  venue). An order found by its client id counts only when the venue created it after the
  send (less ``recv_window_s`` for clock skew): client ids are reused once an order is no
  longer open, so an old order with the same id proves nothing about this create. A read
  that fails at the network level is retried ``read_attempts`` times;
  then the outcome stays ``unknown`` and the engine halts the symbol (reduce-only).
* A refused create (insufficient funds, a filter, post-only that would take, a rate limit
  429/418/-1003) is ``rejected`` with the venue's message, never retried; so is an order the
  market cannot take as it is, or whose markets could not be loaded (nothing was sent).
* A cancel (:meth:`CcxtBroker.cancel`) returns ``canceled`` with the fills that came before
  it, or the state that raced it (``filled``, ``expired``); a cancel that was not confirmed
  (timeout, rate limit, venue unreachable) returns ``cancel_requested``: send it again.
  Cancels may be retried; creates never.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace as evolve
from functools import partial
from typing import Any, TypeVar

import ccxt.async_support as ccxt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from live.brokers.base import FillReport, MarketAssets, OrderRequest, OrderState, VenueTrade, wall_ms
from live.brokers.ccxt_orders import VenueOrder, order_status, venue_order
from live.feeds.base import CandleBatch
from tradeloop.data.schema import ccxt_symbol
from tradeloop.errors import BrokerError, VenueUnreachableError
from tradeloop.risk import TICK_SIZE, MarketRules
from tradeloop.trading import OrderStatus, OrderType

log = logging.getLogger(__name__)
T = TypeVar("T")
S = OrderStatus
RATE_LIMITED = (ccxt.DDoSProtection, ccxt.RateLimitExceeded)  # refused before it was taken


class CcxtBrokerConfig(BaseModel):
    """How the broker waits for a venue to show an order whose create had no answer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    recv_window_s: float = Field(default=5.0, gt=0, description="the venue refuses a request older than this")
    visibility_window_s: float = Field(
        default=10.0, gt=0, description="how long after its create an order may still not show"
    )
    query_interval_s: float = Field(default=1.0, gt=0, description="pause between queries by client id")
    min_queries: int = Field(default=2, ge=1, description="queries by client id before 'not found' counts")
    read_attempts: int = Field(default=3, ge=1, description="tries of a read that fails at the network level")

    @model_validator(mode="after")
    def _window_covers_recv_window(self) -> CcxtBrokerConfig:
        if self.visibility_window_s < self.recv_window_s:
            raise ValueError(
                f"visibility_window_s={self.visibility_window_s} is shorter than recv_window_s="
                f"{self.recv_window_s}: a create may still arrive after the window; set "
                "visibility_window_s >= recv_window_s"
            )
        return self


def cancel_replace_data(exc: Exception) -> dict | None:
    """The ``data`` of Binance's cancel-replace error (-2021 partly failed, -2022 failed): which
    half went through. ccxt puts the body after the exchange id in the message."""
    text = str(exc)
    try:
        body = json.loads(text[text.index("{") :])
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) and isinstance(body.get("data"), dict) else None


class CcxtBroker:
    def __init__(self, exchange: ccxt.Exchange, *, config: CcxtBrokerConfig | None = None):
        self.exchange = exchange
        self.venue = exchange.id
        self.config = config or CcxtBrokerConfig()
        if exchange.id in ("binance", "binanceusdm"):
            exchange.options["recvWindow"] = int(self.config.recv_window_s * 1000)

    # ------------------------------------------------------------------ hooks (perpetuals override them)
    def unified(self, symbol: str) -> str:
        """The ccxt symbol of an order's symbol (``BTC-USDT`` -> ``BTC/USDT``)."""
        return ccxt_symbol(symbol)

    async def _reference_price(self, symbol: str) -> float | None:
        """The price a quote amount is sized at when the order has neither limit nor trigger."""
        return None

    async def _before_create(self, order: OrderRequest, symbol: str) -> None:
        """Account settings the create relies on; ``BrokerError`` refuses the order (nothing sent)."""

    def _lookup(self, order: OrderRequest) -> dict[str, Any]:
        """Extra parameters that find ``order`` among the venue's orders (futures: its algo orders)."""
        return {}

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
            reply = await self.exchange.cancel_order(None, symbol, {"clientOrderId": cid} | self._lookup(order))
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
        if self.unified(old.symbol) != symbol or not self.exchange.market(symbol).get("spot"):
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

    async def query(self, order: OrderRequest) -> OrderState | None:
        """The order as the venue shows it now, by client id (one lookup, reads retried); None
        when the venue does not know it; ``VenueUnreachableError`` when it cannot be asked."""
        symbol = self.unified(order.symbol)
        await self._read(self.exchange.load_markets)
        params = {"clientOrderId": order.client_order_id} | self._lookup(order)
        try:
            reply = await self._read(lambda: self.exchange.fetch_order(None, symbol, params))
        except ccxt.OrderNotFound:
            return None
        return await self._state(order, symbol, reply)

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        if not sent:  # committed, never sent: this is its one create
            return await self.submit(order)
        return await self.resolve(order, since_ms=since_ms)

    async def resolve(self, order: OrderRequest, *, since_ms: int) -> OrderState:
        cid, symbol = order.client_order_id, self.unified(order.symbol)
        try:
            await self._read(self.exchange.load_markets)
            found = await self._by_client_id(order, symbol, since_ms=since_ms)
            if found is None:
                found = await self._among_orders(order, symbol, since_ms=since_ms)
            if found is None:
                found = await self._among_trades(order, symbol, since_ms=since_ms)
        except VenueUnreachableError as exc:
            return OrderState(cid, S.UNKNOWN, reason=f"venue unreachable ({exc}); never resent"[:200])
        return found

    async def _by_client_id(self, order: OrderRequest, symbol: str, *, since_ms: int) -> OrderState | None:
        cid = order.client_order_id
        deadline_ms = since_ms + int(self.config.visibility_window_s * 1000)
        params = {"clientOrderId": cid} | self._lookup(order)
        asked = 0
        while True:
            try:
                reply = await self._read(lambda: self.exchange.fetch_order(None, symbol, params))
                if not self._older_than_send(reply, since_ms):
                    return await self._state(order, symbol, reply)
                log.warning("order %s found by client id predates the send: an earlier order reused the id", cid)
            except ccxt.OrderNotFound:
                pass
            asked += 1
            if asked >= self.config.min_queries and wall_ms() >= deadline_ms:
                return None
            await asyncio.sleep(self.config.query_interval_s)

    async def _among_orders(self, order: OrderRequest, symbol: str, *, since_ms: int) -> OrderState | None:
        cid = order.client_order_id
        since = since_ms - int(self.config.recv_window_s * 1000)  # the venue's clock may lag ours
        orders = await self._read(lambda: self.exchange.fetch_orders(symbol, since=since, params=self._lookup(order)))
        mine = [o for o in orders if o.get("clientOrderId") == cid and not self._older_than_send(o, since_ms)]
        return await self._state(order, symbol, mine[-1]) if mine else None

    def _older_than_send(self, order: dict, since_ms: int) -> bool:
        """True for a venue order created before this send (allowing ``recv_window_s`` of skew)."""
        created = order.get("timestamp")
        return created is not None and int(created) < since_ms - int(self.config.recv_window_s * 1000)

    async def _among_trades(self, order: OrderRequest, symbol: str, *, since_ms: int) -> OrderState:
        cid = order.client_order_id
        never = OrderState(
            cid,
            S.REJECTED,
            reason="the venue never received the order (not found by client id "
            "within the visibility window, nor among its orders or trades since the send)",
        )
        if OrderType(order.order_type) in (OrderType.STOP, OrderType.TAKE_PROFIT):
            return never  # a trigger order cannot have traded before it showed
        since = since_ms - int(self.config.recv_window_s * 1000)
        trades = await self._read(lambda: self.exchange.fetch_my_trades(symbol, since=since))
        for venue_id in dict.fromkeys(str(t["order"]) for t in trades if t.get("side") == order.side):
            try:
                owner = await self._read(partial(self.exchange.fetch_order, venue_id, symbol))
            except ccxt.OrderNotFound:
                return OrderState(
                    cid,
                    S.UNKNOWN,
                    reason=f"trade of venue order {venue_id} on {order.symbol} "
                    "since the send cannot be attributed; never resent",
                )
            if owner.get("clientOrderId") == cid and not self._older_than_send(owner, since_ms):
                return await self._state(order, symbol, owner)
        return never

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """A read, retried when it fails at the network level (timeout, 5xx, rate limit)."""
        last = "no attempt"
        for attempt in range(self.config.read_attempts):
            try:
                return await call()
            except ccxt.OrderNotFound:
                raise
            except ccxt.OperationFailed as exc:
                last = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "venue read failed (%s), attempt %d of %d", last[:120], attempt + 1, self.config.read_attempts
                )
                if attempt + 1 < self.config.read_attempts:
                    await asyncio.sleep(min(self.config.query_interval_s * 2.0**attempt, 10.0))
            except ccxt.ExchangeError as exc:  # authentication, permissions: asking again will not help
                raise VenueUnreachableError(f"{type(exc).__name__}: {exc}"[:120]) from exc
        raise VenueUnreachableError(last[:120])

    async def _state(self, order: OrderRequest, symbol: str, reply: dict) -> OrderState:
        """The venue's order as an ``OrderState``: its status and every fill (the reply's, else
        the account's trades of that order, read when it filled anything)."""
        trades = reply.get("trades") or []
        if not trades and float(reply.get("filled") or 0.0) > 0.0:
            trades = await self._read(lambda: self.exchange.fetch_my_trades(symbol, params={"orderId": reply["id"]}))
        fills = tuple(
            FillReport(
                order.client_order_id,
                order.symbol,
                t["side"] or reply["side"],
                str(t["id"]),
                float(t["amount"]),
                float(t["price"]),
                float((t.get("fee") or {}).get("cost") or 0.0),
                int(t.get("timestamp") or reply.get("timestamp") or 0),
            )
            for t in trades
        )
        return OrderState(order.client_order_id, order_status(reply), venue_order_id=str(reply.get("id")), fills=fills)

    # ------------------------------------------------------------------ the account (reconciliation)
    async def open_orders(self, symbol: str) -> set[str]:
        unified = self.unified(symbol)
        return {o.get("clientOrderId") for o in await self._read(lambda: self.exchange.fetch_open_orders(unified))}

    async def trades(self, symbol: str, *, after_trade_id: str | None) -> list[VenueTrade]:
        unified = self.unified(symbol)
        params: dict[str, Any] = {}
        if after_trade_id is not None and after_trade_id.isdigit():
            params["fromId"] = int(after_trade_id) + 1
        rows = await self._read(lambda: self.exchange.fetch_my_trades(unified, params=params))
        return [
            VenueTrade(
                venue_order_id=str(t["order"]),
                trade_id=str(t["id"]),
                symbol=symbol,
                side=t["side"],
                quantity=float(t["amount"]),
                price=float(t["price"]),
                fee=float((t.get("fee") or {}).get("cost") or 0.0),
                ts=int(t.get("timestamp") or 0),
            )
            for t in rows
        ]

    async def balances(self) -> dict[str, float]:
        balance = await self._read(self.exchange.fetch_balance)
        return {asset: float(total or 0.0) for asset, total in (balance.get("total") or {}).items()}

    async def assets(self, symbol: str) -> MarketAssets:
        await self._read(self.exchange.load_markets)
        market = self.exchange.market(self.unified(symbol))
        precision = market.get("precision") or {}
        return MarketAssets(
            base=market["base"],
            quote=market["quote"],
            amount_step=float(precision.get("amount") or 0.0),
            price_tick=float(precision.get("price") or 0.0),
        )

    # ------------------------------------------------------------------ the rest of Broker
    def market_rules(self, symbols: list[str]) -> dict[str, MarketRules]:
        """Each symbol's minimums and precision from the markets ccxt has loaded (the risk
        engine's rules 7 and 8); none before they are loaded (the first send loads them)."""
        markets = self.exchange.markets or {}
        mode = int(getattr(self.exchange, "precisionMode", TICK_SIZE) or TICK_SIZE)
        return {
            s: MarketRules.from_ccxt(markets[self.unified(s)], precision_mode=mode)
            for s in symbols
            if self.unified(s) in markets
        }

    def is_dust(self, symbol: str, quantity: float) -> bool:
        market = self.exchange.markets.get(self.unified(symbol)) if self.exchange.markets else None
        if market is None:
            return quantity <= 0.0
        least = max(
            (market.get("limits", {}).get("amount", {}).get("min") or 0.0),
            (market.get("precision", {}).get("amount") or 0.0),
        )
        return quantity < least

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        return []  # fills arrive with the create reply, through resolve, or through reconciliation

    async def close(self) -> None:
        await self.exchange.close()
