"""What the ccxt broker asks a venue (it sends nothing here): an order by client id, the proof
of an unknown create's outcome, the account that reconciliation compares, the market rules.

* **A read is retried** ``read_attempts`` times when it fails at the network level (timeout,
  5xx, rate limit), pausing ``query_interval_s``, doubling, at most 10 s; then, or at once
  for any other venue error (authentication, permissions), it raises
  ``VenueUnreachableError``. ``OrderNotFound`` is an answer, never retried.
* **An order as the venue shows it** (``_state``) is its ``OrderStatus``
  (``live.brokers.ccxt_orders.order_status``) and every fill: the reply's trades, else the
  account's trades of that order, read when it filled anything.
* **A create with an unknown outcome** stays ``unknown`` until the venue proves otherwise
  (:meth:`CcxtReader.resolve`):

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
* **Market rules** (minimums, precision, dust) come from the markets ccxt has loaded; none
  before they are loaded (the first send loads them).
* **Venues differ** where ccxt passes the venue's own parameters through: an order's client id
  is sent and compared as the venue spells it (:meth:`CcxtReader.client_id`), an order's
  trades are asked for by ``orderId`` (Binance) or ``ordId`` (OKX), trades after a known one by
  ``fromId`` on Binance and by trade id among the latest elsewhere, and a venue without ccxt's
  ``fetchOrders`` (OKX) is searched among its open, closed and canceled orders.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

import ccxt.async_support as ccxt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from live.brokers.base import FillReport, MarketAssets, OrderRequest, OrderState, VenueTrade, wall_ms
from live.brokers.ccxt_orders import order_status, venue_client_id
from tradeloop.data.schema import ccxt_symbol
from tradeloop.errors import VenueUnreachableError
from tradeloop.risk import TICK_SIZE, MarketRules
from tradeloop.trading import OrderStatus, OrderType

log = logging.getLogger(__name__)
T = TypeVar("T")
S = OrderStatus
ORDER_ID_PARAM = {"okx": "ordId"}  # the venue's name for "this order's trades" (default: Binance's orderId)


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


class CcxtReader:
    """The reads of :class:`live.brokers.ccxt_broker.CcxtBroker` (module rules); the broker adds
    the creates and cancels. Subclasses change ``unified``, ``_lookup`` and ``_state``."""

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

    def _lookup(self, order: OrderRequest) -> dict[str, Any]:
        """Extra parameters that find ``order`` among the venue's orders (futures: its algo orders)."""
        return {}

    def client_id(self, client_order_id: str) -> str:
        """Our client order id as this venue spells it (``ccxt_orders.venue_client_id``)."""
        return venue_client_id(self.venue, client_order_id)

    # ------------------------------------------------------------------ one order
    async def query(self, order: OrderRequest) -> OrderState | None:
        """The order as the venue shows it now, by client id (one lookup, reads retried); None
        when the venue does not know it; ``VenueUnreachableError`` when it cannot be asked."""
        symbol = self.unified(order.symbol)
        await self._read(self.exchange.load_markets)
        params = {"clientOrderId": self.client_id(order.client_order_id)} | self._lookup(order)
        try:
            reply = await self._read(lambda: self.exchange.fetch_order(None, symbol, params))
        except ccxt.OrderNotFound:
            return None
        return await self._state(order, symbol, reply)

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
        params = {"clientOrderId": self.client_id(cid)} | self._lookup(order)
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
        if self.exchange.has.get("fetchOrders"):
            orders = await self._read(
                lambda: self.exchange.fetch_orders(symbol, since=since, params=self._lookup(order))
            )
        else:  # OKX: open, closed and canceled orders are three lists
            orders = []
            for listing in (
                self.exchange.fetch_open_orders,
                self.exchange.fetch_closed_orders,
                self.exchange.fetch_canceled_orders,
            ):
                orders += await self._read(partial(listing, symbol, since, None, self._lookup(order)))
        mine = [
            o
            for o in orders
            if o.get("clientOrderId") == self.client_id(cid) and not self._older_than_send(o, since_ms)
        ]
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
            if owner.get("clientOrderId") == self.client_id(cid) and not self._older_than_send(owner, since_ms):
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
            by_order = {ORDER_ID_PARAM.get(self.venue, "orderId"): reply["id"]}
            trades = await self._read(lambda: self.exchange.fetch_my_trades(symbol, params=by_order))
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
        after = int(after_trade_id) if after_trade_id is not None and after_trade_id.isdigit() else None
        if after is not None and self.venue in ("binance", "binanceusdm"):
            params["fromId"] = after + 1
        rows = await self._read(lambda: self.exchange.fetch_my_trades(unified, params=params))
        if after is not None:  # elsewhere: the latest trades, those after the known one kept
            rows = [t for t in rows if not str(t["id"]).isdigit() or int(t["id"]) > after]
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

    # ------------------------------------------------------------------ market rules
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
