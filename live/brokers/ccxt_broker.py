"""A broker on a real venue through ccxt (async): market orders with client order ids.

* Every order carries its deterministic client order id (``clientOrderId``), so the venue
  itself refuses a duplicate.
* Amounts go through the market's precision (``amount_to_precision``; a buy's quote amount
  is truncated to the quote precision by ccxt).
* **An order is never sent twice.** A create that times out or loses its connection has an
  unknown outcome: the broker waits out the venue's receive window (after which the venue
  refuses the original request if it had not arrived yet), then asks for the order by its
  client id. Found: its state and fills are used. Not found: it never reached the venue and
  is reported rejected. Still unreachable: reported ``unknown``, and reconciliation asks again.
"""

from __future__ import annotations

import asyncio
import logging

import ccxt.async_support as ccxt

from live.brokers.base import FillReport, OrderRequest, OrderState
from live.feeds.base import CandleBatch
from tradeloop.data.schema import ccxt_symbol, lake_symbol

log = logging.getLogger(__name__)
STATUS = {"closed": "filled", "open": "submitted", "canceled": "canceled", "expired": "canceled",
          "rejected": "rejected"}


class CcxtBroker:
    def __init__(self, exchange: ccxt.Exchange, *, recv_window_s: float = 5.0, query_attempts: int = 3):
        self.exchange = exchange
        self.venue = exchange.id
        self.recv_window_s, self.query_attempts = recv_window_s, query_attempts
        if exchange.id == "binance":
            exchange.options["recvWindow"] = int(recv_window_s * 1000)

    async def submit(self, order: OrderRequest) -> OrderState:
        await self.exchange.load_markets()
        symbol = ccxt_symbol(order.symbol)
        params = {"clientOrderId": order.client_order_id}
        try:
            if order.side == "buy":
                reply = await self.exchange.create_order(symbol, "market", "buy", None, None,
                                                         params | {"cost": order.quote_amount})
            else:
                amount = float(self.exchange.amount_to_precision(symbol, order.quantity))
                reply = await self.exchange.create_order(symbol, "market", "sell", amount, None, params)
        except ccxt.DDoSProtection as exc:  # rate limited: refused before it was taken
            return OrderState(order.client_order_id, "rejected", reason=f"venue refused: {exc}"[:200])
        except ccxt.OperationFailed as exc:  # timeout, lost connection, 5xx/-1001: the outcome is unknown
            log.warning("create of %s has an unknown outcome (%s): querying, not resending",
                        order.client_order_id, type(exc).__name__)
            await asyncio.sleep(self.recv_window_s)
            return await self.query(order.client_order_id, order.symbol)
        except ccxt.ExchangeError as exc:  # refused: insufficient funds, invalid order, duplicate id, ...
            return OrderState(order.client_order_id, "rejected", reason=str(exc)[:200])
        return await self._state(order.client_order_id, symbol, reply)

    async def recover(self, order: OrderRequest, *, acknowledged: bool) -> OrderState:
        if not acknowledged:  # a create cut off by the crash may still arrive: wait its window out
            await asyncio.sleep(self.recv_window_s)
        state = await self.query(order.client_order_id, order.symbol)
        if not acknowledged and state.status == "rejected":  # the venue never got it: send it now
            return await self.submit(order)
        return state

    async def query(self, client_order_id: str, symbol: str) -> OrderState:
        unified = ccxt_symbol(symbol)
        for attempt in range(self.query_attempts):
            try:
                reply = await self.exchange.fetch_order(None, unified, {"clientOrderId": client_order_id})
                return await self._state(client_order_id, unified, reply)
            except ccxt.OrderNotFound:
                return OrderState(client_order_id, "rejected", reason="the venue never received the order")
            except ccxt.NetworkError as exc:
                log.warning("query of %s failed (%s), attempt %d", client_order_id, exc, attempt + 1)
                await asyncio.sleep(min(2.0**attempt, 10.0))
        return OrderState(client_order_id, "unknown", reason="venue unreachable; reconciliation will ask again")

    async def _state(self, client_order_id: str, symbol: str, reply: dict) -> OrderState:
        status = STATUS.get(reply.get("status") or "", "submitted")
        trades = reply.get("trades") or []
        if not trades and (reply.get("filled") or 0) > 0:
            trades = await self.exchange.fetch_my_trades(symbol, params={"orderId": reply["id"]})
        fills = tuple(
            FillReport(client_order_id, lake_symbol(symbol), t["side"] or reply["side"], str(t["id"]),
                       float(t["amount"]), float(t["price"]), float((t.get("fee") or {}).get("cost") or 0.0),
                       int(t.get("timestamp") or reply.get("timestamp") or 0))
            for t in trades)
        return OrderState(client_order_id, status, venue_order_id=str(reply.get("id")), fills=fills)

    def is_dust(self, symbol: str, quantity: float) -> bool:
        market = self.exchange.markets.get(ccxt_symbol(symbol)) if self.exchange.markets else None
        if market is None:
            return quantity <= 0.0
        least = max((market.get("limits", {}).get("amount", {}).get("min") or 0.0),
                    (market.get("precision", {}).get("amount") or 0.0))
        return quantity < least

    async def on_bar(self, batch: CandleBatch, *, cash: float) -> list[OrderState]:
        return []  # fills arrive with the create reply or through query

    async def close(self) -> None:
        await self.exchange.close()
