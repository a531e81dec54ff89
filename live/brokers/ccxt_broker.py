"""A broker on a real venue through ccxt (async): market orders with client order ids.

* Every order carries its deterministic client order id (``clientOrderId``). Venues check
  its uniqueness only among *open* orders (Binance does), so a filled order's id would be
  accepted again: the id is no protection against a second create, this module's rule is.
* Amounts go through the market's precision (``amount_to_precision``; a buy's quote amount
  is truncated to the quote precision by ccxt).
* **A create goes out at most once.** A create that times out, loses its connection or gets
  a 5xx / -1001 has an unknown outcome; it stays ``unknown`` until the venue proves
  otherwise (:meth:`CcxtBroker.resolve`):

  1. Ask for the order by client id, repeatedly (``query_interval_s``), until at least
     ``min_queries`` answers and ``visibility_window_s`` after the send: venues show a new
     order late, so one "order not found" proves nothing.
  2. Look for it among the account's orders since the send (closed ones included).
  3. Look at the account's trades on the symbol and side since the send; each trade's
     order is fetched by its venue id. A trade that cannot be attributed keeps it unknown.

  Only when all three came back empty is the order ``rejected`` (it never reached the
  venue). An order found by its client id counts only when the venue created it after the
  send (less ``recv_window_s`` for clock skew): client ids are reused once an order is no
  longer open, so an old order with the same id proves nothing about this create. A read
  that fails at the network level is retried ``read_attempts`` times;
  then the outcome stays ``unknown`` and the engine halts the symbol (reduce-only).
* A rate-limited create (429/418) was refused before it was taken: ``rejected``; so is an
  order whose markets could not be loaded (the create was never sent).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import ccxt.async_support as ccxt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from live.brokers.base import FillReport, MarketAssets, OrderRequest, OrderState, VenueTrade, wall_ms
from live.feeds.base import CandleBatch
from tradeloop.data.schema import ccxt_symbol, lake_symbol
from tradeloop.errors import VenueUnreachableError

log = logging.getLogger(__name__)
T = TypeVar("T")
STATUS = {
    "closed": "filled",
    "open": "submitted",
    "canceled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}


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


class CcxtBroker:
    def __init__(self, exchange: ccxt.Exchange, *, config: CcxtBrokerConfig | None = None):
        self.exchange = exchange
        self.venue = exchange.id
        self.config = config or CcxtBrokerConfig()
        if exchange.id == "binance":
            exchange.options["recvWindow"] = int(self.config.recv_window_s * 1000)

    # ------------------------------------------------------------------ orders
    async def submit(self, order: OrderRequest) -> OrderState:
        symbol = ccxt_symbol(order.symbol)
        try:
            await self._read(self.exchange.load_markets)
        except VenueUnreachableError as exc:  # before the create: nothing went out
            return OrderState(
                order.client_order_id,
                "rejected",
                reason=f"venue unreachable before the create was sent ({exc}); nothing went out"[:200],
            )
        params = {"clientOrderId": order.client_order_id}
        sent_ms = wall_ms()
        try:
            if order.side == "buy":
                reply = await self.exchange.create_order(
                    symbol, "market", "buy", None, None, params | {"cost": order.quote_amount}
                )
            else:
                amount = float(self.exchange.amount_to_precision(symbol, order.quantity))
                reply = await self.exchange.create_order(symbol, "market", "sell", amount, None, params)
        except ccxt.DDoSProtection as exc:  # rate limited: refused before it was taken
            return OrderState(order.client_order_id, "rejected", reason=f"venue refused: {exc}"[:200])
        except ccxt.OperationFailed as exc:  # timeout, lost connection, 5xx/-1001: the outcome is unknown
            log.warning(
                "create of %s has an unknown outcome (%s): resolving, never resending",
                order.client_order_id,
                type(exc).__name__,
            )
            return await self.resolve(order, since_ms=sent_ms)
        except ccxt.ExchangeError as exc:  # refused: insufficient funds, invalid order, duplicate id, ...
            return OrderState(order.client_order_id, "rejected", reason=str(exc)[:200])
        try:
            return await self._state(order.client_order_id, symbol, reply)
        except VenueUnreachableError as exc:  # accepted, its fills not readable yet: the venue check reads them
            return OrderState(
                order.client_order_id,
                "submitted",
                venue_order_id=str(reply.get("id")),
                reason=f"accepted; fills not read yet ({exc})"[:200],
            )

    async def recover(self, order: OrderRequest, *, sent: bool, since_ms: int) -> OrderState:
        if not sent:  # committed, never sent: this is its one create
            return await self.submit(order)
        return await self.resolve(order, since_ms=since_ms)

    async def resolve(self, order: OrderRequest, *, since_ms: int) -> OrderState:
        cid, symbol = order.client_order_id, ccxt_symbol(order.symbol)
        try:
            await self._read(self.exchange.load_markets)
            found = await self._by_client_id(cid, symbol, since_ms=since_ms)
            if found is None:
                found = await self._among_orders(cid, symbol, since_ms=since_ms)
            if found is None:
                found = await self._among_trades(order, symbol, since_ms=since_ms)
        except VenueUnreachableError as exc:
            return OrderState(cid, "unknown", reason=f"venue unreachable ({exc}); never resent"[:200])
        return found

    async def _by_client_id(self, cid: str, symbol: str, *, since_ms: int) -> OrderState | None:
        deadline_ms = since_ms + int(self.config.visibility_window_s * 1000)
        asked = 0
        while True:
            try:
                reply = await self._read(lambda: self.exchange.fetch_order(None, symbol, {"clientOrderId": cid}))
                if not self._older_than_send(reply, since_ms):
                    return await self._state(cid, symbol, reply)
                log.warning("order %s found by client id predates the send: an earlier order reused the id", cid)
            except ccxt.OrderNotFound:
                pass
            asked += 1
            if asked >= self.config.min_queries and wall_ms() >= deadline_ms:
                return None
            await asyncio.sleep(self.config.query_interval_s)

    async def _among_orders(self, cid: str, symbol: str, *, since_ms: int) -> OrderState | None:
        since = since_ms - int(self.config.recv_window_s * 1000)  # the venue's clock may lag ours
        orders = await self._read(lambda: self.exchange.fetch_orders(symbol, since=since))
        mine = [o for o in orders if o.get("clientOrderId") == cid and not self._older_than_send(o, since_ms)]
        return await self._state(cid, symbol, mine[-1]) if mine else None

    def _older_than_send(self, order: dict, since_ms: int) -> bool:
        """True for a venue order created before this send (allowing ``recv_window_s`` of skew)."""
        created = order.get("timestamp")
        return created is not None and int(created) < since_ms - int(self.config.recv_window_s * 1000)

    async def _among_trades(self, order: OrderRequest, symbol: str, *, since_ms: int) -> OrderState:
        cid = order.client_order_id
        since = since_ms - int(self.config.recv_window_s * 1000)
        trades = await self._read(lambda: self.exchange.fetch_my_trades(symbol, since=since))
        for venue_id in dict.fromkeys(str(t["order"]) for t in trades if t.get("side") == order.side):
            try:
                owner = await self._read(lambda vid=venue_id: self.exchange.fetch_order(vid, symbol))
            except ccxt.OrderNotFound:
                return OrderState(
                    cid,
                    "unknown",
                    reason=f"trade of venue order {venue_id} on {order.symbol} "
                    "since the send cannot be attributed; never resent",
                )
            if owner.get("clientOrderId") == cid and not self._older_than_send(owner, since_ms):
                return await self._state(cid, symbol, owner)
        return OrderState(
            cid,
            "rejected",
            reason="the venue never received the order (not found by client id "
            "within the visibility window, nor among its orders or trades since the send)",
        )

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

    async def _state(self, client_order_id: str, symbol: str, reply: dict) -> OrderState:
        status = STATUS.get(reply.get("status") or "", "submitted")
        trades = reply.get("trades") or []
        if not trades and (reply.get("filled") or 0) > 0:
            trades = await self._read(lambda: self.exchange.fetch_my_trades(symbol, params={"orderId": reply["id"]}))
        fills = tuple(
            FillReport(
                client_order_id,
                lake_symbol(symbol),
                t["side"] or reply["side"],
                str(t["id"]),
                float(t["amount"]),
                float(t["price"]),
                float((t.get("fee") or {}).get("cost") or 0.0),
                int(t.get("timestamp") or reply.get("timestamp") or 0),
            )
            for t in trades
        )
        return OrderState(client_order_id, status, venue_order_id=str(reply.get("id")), fills=fills)

    # ------------------------------------------------------------------ the account (reconciliation)
    async def open_orders(self, symbol: str) -> set[str]:
        unified = ccxt_symbol(symbol)
        return {o.get("clientOrderId") for o in await self._read(lambda: self.exchange.fetch_open_orders(unified))}

    async def trades(self, symbol: str, *, after_trade_id: str | None) -> list[VenueTrade]:
        unified = ccxt_symbol(symbol)
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
        market = self.exchange.market(ccxt_symbol(symbol))
        precision = market.get("precision") or {}
        return MarketAssets(
            base=market["base"],
            quote=market["quote"],
            amount_step=float(precision.get("amount") or 0.0),
            price_tick=float(precision.get("price") or 0.0),
        )

    # ------------------------------------------------------------------ the rest of Broker
    def is_dust(self, symbol: str, quantity: float) -> bool:
        market = self.exchange.markets.get(ccxt_symbol(symbol)) if self.exchange.markets else None
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
