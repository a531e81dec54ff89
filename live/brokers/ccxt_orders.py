"""From an ``OrderRequest`` to what ccxt sends, and from ccxt's order back to an ``OrderStatus``.

Rules:

* An order goes out only as a type the market lists natively (``market['info']['orderTypes']``
  on Binance): spot ``MARKET``, ``LIMIT``, ``LIMIT_MAKER`` (post-only), ``STOP_LOSS(_LIMIT)``,
  ``TAKE_PROFIT(_LIMIT)``; contracts ``MARKET``, ``LIMIT`` (post-only: ``GTX``), ``STOP(_MARKET)``,
  ``TAKE_PROFIT(_MARKET)``. A stop or take-profit with a ``price`` is its limit variant. Anything
  else is refused before it is sent (:class:`~tradeloop.errors.BrokerError`), so the caller can
  emulate it; nothing is approximated behind its back.
* Amounts are truncated to the market's step (``amount_to_precision``), prices rounded to its
  tick (``price_to_precision``). A spot market buy may spend ``quote_amount`` (``cost``); any
  other order with only ``quote_amount`` is sized at its limit price, else its trigger, else
  the reference price the caller supplies (perpetuals: the mark price).
* ``reduce_only`` is sent on contracts only: spot has no such flag (a spot sell can never
  exceed what the account holds).
* Other venues (OKX) take ccxt's unified types: ``market``, ``limit`` (post-only: ccxt's
  ``postOnly``; IOC: ``timeInForce``); a stop or take-profit is refused before it is sent (the
  caller emulates it). A spot market buy of ``quote_amount`` spends it as the quote amount
  (OKX's ``tgtCcy=quote_ccy``). A client order id goes out as the venue spells it
  (:func:`venue_client_id`: OKX takes 1-32 letters and digits).
* Status: ccxt's ``open`` is ``acknowledged``, or ``partially_filled`` once something filled;
  ``closed`` is ``filled``; ``canceled`` and ``expired`` keep their names (their fills, if any,
  come with the state).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from live.brokers.base import OrderRequest
from tradeloop.errors import BrokerError
from tradeloop.trading import OrderStatus, OrderType, TimeInForce

CCXT_STATUS = {
    "closed": OrderStatus.FILLED,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}

BINANCE_VENUES = ("binance", "binanceusdm")  # venues whose native order types ccxt passes through


def venue_client_id(venue: str, client_order_id: str) -> str:
    """``client_order_id`` as ``venue`` takes it: unchanged, except on OKX (1-32 letters and
    digits): without its dashes, or a 32-character digest of it when still longer."""
    if venue != "okx":
        return client_order_id
    plain = "".join(c for c in client_order_id if c.isalnum())
    if len(plain) <= 32:
        return plain
    return "tl" + hashlib.sha1(client_order_id.encode(), usedforsecurity=False).hexdigest()[:30]


@dataclass(frozen=True, kw_only=True, slots=True)
class VenueOrder:
    """The arguments of ccxt's ``create_order(symbol, type, side, amount, price, params)``."""

    symbol: str
    type: str  # the venue's own type name, e.g. STOP_LOSS_LIMIT
    side: str
    amount: float | None
    price: float | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def conditional(self) -> bool:
        """A stop or take-profit: it waits for its trigger (on Binance futures: an algo order)."""
        return "triggerPrice" in self.params


def native_type(order: OrderRequest, *, contract: bool) -> str:
    """The venue's name for ``order``'s type (Binance's vocabulary, which ccxt passes through)."""
    kind, limit = OrderType(order.order_type), order.price is not None
    post_only = TimeInForce(order.time_in_force) == TimeInForce.POST_ONLY
    if post_only and kind != OrderType.LIMIT:
        raise BrokerError(f"order {order.client_order_id}: post-only applies to limit orders, not {kind}")
    if kind == OrderType.MARKET:
        return "MARKET"
    if kind == OrderType.LIMIT:
        if not limit:
            raise BrokerError(f"order {order.client_order_id}: a limit order needs price")
        return "LIMIT_MAKER" if post_only and not contract else "LIMIT"
    if order.trigger_price is None:
        raise BrokerError(f"order {order.client_order_id}: a {kind} order needs trigger_price")
    if kind == OrderType.STOP:
        return ("STOP" if limit else "STOP_MARKET") if contract else ("STOP_LOSS_LIMIT" if limit else "STOP_LOSS")
    return (
        ("TAKE_PROFIT" if limit else "TAKE_PROFIT_MARKET")
        if contract
        else ("TAKE_PROFIT_LIMIT" if limit else "TAKE_PROFIT")
    )


def venue_order(exchange: Any, order: OrderRequest, symbol: str, *, reference_price: float | None) -> VenueOrder:
    """What ccxt sends for ``order`` on ``symbol`` (a loaded market); ``BrokerError`` when the
    market cannot take it as it is (the reason says what to change)."""
    market = exchange.market(symbol)
    contract = bool(market.get("contract"))
    if exchange.id not in BINANCE_VENUES:
        return _unified_order(exchange, order, symbol, reference_price=reference_price)
    kind = native_type(order, contract=contract)
    listed = (market.get("info") or {}).get("orderTypes") or []
    if listed and kind not in listed:
        raise BrokerError(
            f"order {order.client_order_id}: {symbol} on {exchange.id} has no native {kind} orders "
            f"(it lists {', '.join(listed)}); not sent"
        )
    params: dict[str, Any] = {"clientOrderId": order.client_order_id}
    tif, priced = TimeInForce(order.time_in_force), kind != "MARKET" and order.price is not None
    if priced and tif != TimeInForce.POST_ONLY:
        params["timeInForce"] = "IOC" if tif == TimeInForce.IOC else "GTC"
    if tif == TimeInForce.POST_ONLY:
        params["postOnly"] = True
    if order.trigger_price is not None and kind not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
        params["triggerPrice"] = float(exchange.price_to_precision(symbol, order.trigger_price))
    if order.reduce_only and contract:
        params["reduceOnly"] = True
    price = float(exchange.price_to_precision(symbol, order.price)) if priced else None
    if kind == "MARKET" and order.side == "buy" and order.quantity is None and not contract:
        return VenueOrder(
            symbol=symbol,
            type=kind,
            side=order.side,
            amount=None,
            price=None,
            params=params | {"cost": order.quote_amount},
        )
    quantity = order.quantity
    if quantity is None:
        at = price or params.get("triggerPrice") or reference_price
        if not order.quote_amount or not at:
            raise BrokerError(f"order {order.client_order_id}: set quantity (no price to size quote_amount at)")
        quantity = order.quote_amount / at
    amount = float(exchange.amount_to_precision(symbol, quantity))
    if amount <= 0:
        raise BrokerError(f"order {order.client_order_id}: {quantity} is below {symbol}'s amount step")
    return VenueOrder(symbol=symbol, type=kind, side=order.side, amount=amount, price=price, params=params)


def _unified_order(exchange: Any, order: OrderRequest, symbol: str, *, reference_price: float | None) -> VenueOrder:
    """ccxt's unified ``market`` / ``limit`` orders (module rules: other venues)."""
    kind, tif = OrderType(order.order_type), TimeInForce(order.time_in_force)
    cid = order.client_order_id
    if kind not in (OrderType.MARKET, OrderType.LIMIT):
        raise BrokerError(
            f"order {cid}: {symbol} on {exchange.id} takes no {kind} orders through this broker; not sent"
        )
    if tif == TimeInForce.POST_ONLY and kind != OrderType.LIMIT:
        raise BrokerError(f"order {cid}: post-only applies to limit orders, not {kind}")
    params: dict[str, Any] = {"clientOrderId": venue_client_id(exchange.id, cid)}
    if kind == OrderType.LIMIT:
        if order.price is None:
            raise BrokerError(f"order {cid}: a limit order needs price")
        if tif == TimeInForce.POST_ONLY:
            params["postOnly"] = True
        elif tif == TimeInForce.IOC:
            params["timeInForce"] = "IOC"
    price = float(exchange.price_to_precision(symbol, order.price)) if kind == OrderType.LIMIT else None
    spot = not exchange.market(symbol).get("contract")
    if kind == OrderType.MARKET and order.side == "buy" and order.quantity is None and spot:
        spend = float(exchange.cost_to_precision(symbol, order.quote_amount))
        params |= {"cost": spend, "tgtCcy": "quote_ccy", "createMarketBuyOrderRequiresPrice": False}
        return VenueOrder(symbol=symbol, type="market", side=order.side, amount=spend, price=None, params=params)
    quantity = order.quantity
    if quantity is None:
        at = price or reference_price
        if not order.quote_amount or not at:
            raise BrokerError(f"order {cid}: set quantity (no price to size quote_amount at)")
        quantity = order.quote_amount / at
    amount = float(exchange.amount_to_precision(symbol, quantity))
    if amount <= 0:
        raise BrokerError(f"order {cid}: {quantity} is below {symbol}'s amount step")
    return VenueOrder(symbol=symbol, type=kind.value, side=order.side, amount=amount, price=price, params=params)


def order_status(reply: dict) -> OrderStatus:
    """ccxt's unified order status (and fill) as the ``tradeloop.trading`` vocabulary."""
    status = CCXT_STATUS.get(reply.get("status") or "")
    if status is not None:
        return status
    return OrderStatus.PARTIALLY_FILLED if float(reply.get("filled") or 0.0) > 0.0 else OrderStatus.ACKNOWLEDGED
