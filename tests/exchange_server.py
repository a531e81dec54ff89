"""A loopback HTTP server that speaks Binance's spot REST format (the only stand-in allowed).

It serves the recorded ``exchangeInfo`` capture and ``/api/v3/klines`` built from real
candles, with Binance's pagination (startTime/endTime/limit), error bodies and status
codes. Faults are scripted per klines request number (429, 5xx, slow responses) so tests
can break a backfill in the middle.

Trading (signed, HMAC-SHA256 as Binance checks it; ``tests/loopback_http.py``):
``POST /api/v3/order`` (MARKET, LIMIT with GTC/IOC/FOK, LIMIT_MAKER, STOP_LOSS(_LIMIT),
TAKE_PROFIT(_LIMIT), as far as the symbol's ``orderTypes`` list them), ``DELETE /api/v3/order``
(cancel), ``POST /api/v3/order/cancelReplace``, ``GET /api/v3/order`` (by ``origClientOrderId``
or ``orderId``), ``openOrders``, ``allOrders``, ``myTrades`` (``symbol``, ``orderId``,
``startTime``/``endTime``, ``fromId``, ``limit``) and ``account`` (total balances moved by every
fill: base +/- qty, quote -/+ notional and a 0.1% commission; ``locked`` is what open orders
hold). Matching, triggers and filters follow ``tests/binance_rules.py``; the test moves the
market with :meth:`BinanceLoopback.trade`. Refusals carry Binance's codes and messages:
``-2010`` (insufficient balance, post-only would take, stop would trigger, duplicate id),
``-1013`` (filter failures), ``-2011`` (cancel of an unknown or closed order), ``-2013``
(query of an unknown order), ``-2021``/``-2022`` (cancel-replace partly / wholly failed).

Realistic modes, all off by default:

* ``check_balances``: an order needing more than the free balance is refused (-2010).
* ``client_ids_unique="open"``: a client order id is refused only while an order with it
  is open, as on Binance; a filled order's id is accepted again (``"all"``: never twice).
* ``visible_after_s``: an order (and its trades) shows in queries only that long after its
  create, as a venue's read side lags its matching engine.
* ``hold_orders``: market orders rest as ``NEW`` until :meth:`BinanceLoopback.fill_held`
  (all at once, or part of them: ``PARTIALLY_FILLED``, still open).
* ``order_faults[n]`` scripts the n-th create (``path_faults`` any other request): refused
  (not placed), or with ``Fault(executes=True)`` placed and then answered with an error, or
  placed and answered after ``delay_s`` (the client times out).
* ``down``: every signed request is answered 503 (the venue is unreachable).

``creates`` counts the create requests (cancel-replace included) that reached the venue per
client order id.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import polars as pl
from binance_rules import check_notional, check_price, check_quantity, dec, filters, fmt, marketable, triggered
from loopback_http import Fault, LoopbackHttp, Reject, Reply, rate_limited, server_error

__all__ = ["FIXTURES", "BinanceLoopback", "Fault", "kline_rows", "rate_limited", "server_error"]

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "binance"
INTERVAL_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}
SIGNED_READS = ("/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades", "/api/v3/account")
OPEN = ("NEW", "PARTIALLY_FILLED")
STOPS = {
    "STOP_LOSS": "stop",
    "STOP_LOSS_LIMIT": "stop",
    "TAKE_PROFIT": "take_profit",
    "TAKE_PROFIT_LIMIT": "take_profit",
}
UNSUPPORTED = {
    "MARKET": "Market orders are not supported for this symbol.",
    "STOP_LOSS": "Stop loss orders are not supported for this symbol.",
    "STOP_LOSS_LIMIT": "Stop loss limit orders are not supported for this symbol.",
    "TAKE_PROFIT": "Take profit orders are not supported for this symbol.",
    "TAKE_PROFIT_LIMIT": "Take profit limit orders are not supported for this symbol.",
}
INSUFFICIENT = "Account has insufficient balance for requested action."


def kline_rows(candles: pl.DataFrame, interval_ms: int) -> list[list]:
    """Candles as Binance kline arrays (prices as strings, as the exchange sends them)."""
    rows = []
    for ts, o, h, lo, c, v in candles.select("ts", "open", "high", "low", "close", "volume").iter_rows():
        rows.append(
            [ts, f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{v:.8f}", ts + interval_ms - 1]
            + [f"{v * c:.8f}", 100, f"{v / 2:.8f}", f"{v * c / 2:.8f}", "0"]
        )
    return rows


def _public(order: dict) -> dict:
    return {k: v for k, v in order.items() if not k.startswith("_") and k != "fills"}


def _mandatory(q: dict, name: str) -> str:
    if not q.get(name):
        raise Reject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return q[name]


@dataclass
class BinanceLoopback(LoopbackHttp):
    """Start with ``with BinanceLoopback(...) as server:``; ``server.url`` is the base URL."""

    candles: dict[tuple[str, str], pl.DataFrame]  # (BTCUSDT, 1d) -> candles
    faults: dict[int, Fault] = field(default_factory=dict)  # klines request number (1-based)
    requests: list[str] = field(default_factory=list)
    prices: dict[str, float] = field(default_factory=dict)  # BTCUSDT -> last trade price
    order_faults: dict[int, Fault] = field(default_factory=dict)  # order-create request number (1-based)
    api_key: str = "loopback-key"
    secret: str = "loopback-secret"
    orders: dict[str, dict] = field(default_factory=dict)  # clientOrderId -> the venue's latest order with it
    book: list[dict] = field(default_factory=list)  # every order placed, oldest first
    creates: Counter = field(default_factory=Counter)  # clientOrderId -> create requests received
    balances: dict[str, float] = field(default_factory=dict)  # asset -> total balance (free + locked)
    client_ids_unique: str = "all"  # "all" | "open" (Binance: only among open orders)
    visible_after_s: float = 0.0
    hold_orders: bool = False
    check_balances: bool = False
    down: bool = False
    down_paths: set[str] = field(default_factory=set)  # signed reads answered 503 (e.g. /api/v3/myTrades)
    path_faults: dict[str, dict[int, Fault]] = field(default_factory=dict)  # "DELETE /api/v3/order" -> n -> fault
    reply_type: str = "FULL"  # "RESULT": a create's reply carries no fills (Binance's newOrderRespType)
    server_time_ms: int | None = None  # the venue's clock (/api/v3/time); None: this host's
    exchange_info: dict = field(default_factory=lambda: json.loads((FIXTURES / "exchange_info.json").read_text()))

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self.path_faults["POST /api/v3/order"] = self.order_faults  # the same dict: tests script it later

    # ------------------------------------------------------------------ HTTP routes
    def unsigned(self, method: str, path: str, params: dict[str, str], raw_path: str) -> tuple | None:
        if method != "GET":
            return None
        if path == "/api/v3/exchangeInfo":
            return 200, self.exchange_info
        if path == "/api/v3/time":
            now = self.server_time_ms if self.server_time_ms is not None else int(time.time() * 1000)
            return 200, {"serverTime": now}
        if path == "/api/v3/ping":
            return 200, {}
        if path == "/api/v3/klines":
            fault = self.faults.get(len(self.klines_requests()))
            if fault:
                time.sleep(fault.delay_s)
                return fault.status, fault.body, ({"Retry-After": "1"} if fault.status == 429 else None)
            return self._klines(params)
        return None

    def signed(self, method: str, path: str) -> bool:
        if method == "GET":
            return path in SIGNED_READS
        return (method, path) in (("POST", "/api/v3/order"), ("DELETE", "/api/v3/order")) or (
            method == "POST" and path == "/api/v3/order/cancelReplace"
        )

    def received(self, method: str, path: str, params: dict[str, str]) -> None:
        if method == "POST" and path in ("/api/v3/order", "/api/v3/order/cancelReplace"):
            self.creates[params.get("newClientOrderId", "")] += 1

    def route(self, method: str, path: str, params: dict[str, str]) -> Reply:
        if method == "GET":
            return self.read(path, params)
        try:
            with self._lock:
                if path == "/api/v3/order/cancelReplace":
                    return 200, self._cancel_replace(params)
                if method == "DELETE":
                    return 200, self._cancel(params)
                return 200, self._reply(self._new_order(params))
        except Reject as refused:
            return refused.status, refused.body()

    def place(self, q: dict) -> Reply:
        """A create as the venue answers it (what ``POST /api/v3/order`` does)."""
        try:
            with self._lock:
                return 200, self._reply(self._new_order(q))
        except Reject as refused:
            return refused.status, refused.body()

    def _reply(self, order: dict) -> dict:
        reply = {k: v for k, v in order.items() if not k.startswith("_")}
        if self.reply_type == "RESULT":
            reply.pop("fills")
        return reply

    # ------------------------------------------------------------------ the venue
    def _new_order(self, q: dict) -> dict:
        """Check and place an order; fill what is marketable at once (``binance_rules``)."""
        cid = q.get("newClientOrderId") or f"auto-{len(self.book) + 1}"
        if any(
            o["clientOrderId"] == cid and (self.client_ids_unique == "all" or o["status"] in OPEN) for o in self.book
        ):
            raise Reject(-2010, "Duplicate order sent.")
        symbol, side, kind = _mandatory(q, "symbol"), _mandatory(q, "side"), _mandatory(q, "type")
        info = self._info(symbol)
        if kind not in info["orderTypes"]:
            raise Reject(-2010, UNSUPPORTED.get(kind, "Unsupported order combination"))
        if symbol not in self.prices:
            raise Reject(-1013, f"Filter failure: this loopback has no price for {symbol}; set prices[{symbol!r}]")
        last, f = dec(self.prices[symbol]), filters(info)
        price = (
            dec(_mandatory(q, "price"), name="price") if kind not in ("MARKET", "STOP_LOSS", "TAKE_PROFIT") else None
        )
        stop = dec(_mandatory(q, "stopPrice"), name="stopPrice") if kind in STOPS else None
        tif = _mandatory(q, "timeInForce") if kind in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT") else "GTC"
        for px in (price, stop):
            if px is not None:
                check_price(f, px)
        if "quantity" in q:
            qty = dec(q["quantity"], name="quantity")
            check_quantity(f, qty, market=price is None)
            notional = qty * (price if price is not None else last)
        elif kind == "MARKET" and "quoteOrderQty" in q:  # a quote amount buys whole lot steps (as Binance does)
            notional = dec(q["quoteOrderQty"], name="quoteOrderQty")
            step = dec(f["LOT_SIZE"]["stepSize"])
            qty = Decimal(math.floor(notional / last / step)) * step
        else:
            raise Reject(-1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed.")
        check_notional(f, notional, market=price is None)
        if stop is not None and triggered(STOPS[kind], side, stop, last):
            raise Reject(-2010, "Stop price would trigger immediately.")
        if kind == "LIMIT_MAKER" and marketable(side, price, last):
            raise Reject(-2010, "Order would immediately match and take.")
        if self.check_balances:
            self._check_funds(symbol, side, qty, price or stop or last, quote=notional if "quantity" not in q else None)
        now, order_id = int(time.time() * 1000), 1000 + len(self.book)
        order = {
            "symbol": symbol,
            "orderId": order_id,
            "orderListId": -1,
            "clientOrderId": cid,
            "transactTime": now,
            "time": now,
            "updateTime": now,
            "price": fmt(price or 0),
            "origQty": fmt(qty),
            "executedQty": fmt(0),
            "cummulativeQuoteQty": fmt(0),
            "status": "NEW",
            "timeInForce": tif,
            "type": kind,
            "side": side,
            "workingTime": -1 if stop is not None else now,
            "fills": [],
            "_trades": [],
            "_armed": stop is not None,
            "selfTradePreventionMode": "NONE",
            "_visible_at": time.monotonic() + self.visible_after_s,
        } | ({"stopPrice": fmt(stop)} if stop is not None else {})
        self.book.append(order)
        self.orders[cid] = order
        if kind == "MARKET" and not self.hold_orders:
            self._fill(order, float(last))
        elif kind == "LIMIT" and marketable(side, price, last):
            self._fill(order, float(last))  # a taker at the last price
        elif kind == "LIMIT" and tif in ("IOC", "FOK"):
            order.update(status="EXPIRED", updateTime=now)
        return order

    def _check_funds(self, symbol: str, side: str, qty: Decimal, price: Decimal, *, quote: Decimal | None) -> None:
        base, quote_asset = self._assets(symbol)
        asset, need = (quote_asset, quote if quote is not None else qty * price) if side == "BUY" else (base, qty)
        free = self.balances.get(asset, 0.0) - self._locked().get(asset, 0.0)
        if float(need) > free + 1e-12:
            raise Reject(-2010, INSUFFICIENT)

    def _locked(self) -> dict[str, float]:
        """What open orders hold: a buy its quote at its limit (or trigger) price, a sell its base."""
        out: dict[str, float] = {}
        for o in self.book:
            if o["status"] not in OPEN or o["type"] == "MARKET":
                continue
            base, quote = self._assets(o["symbol"])
            left = float(o["origQty"]) - float(o["executedQty"])
            px = float(o["price"]) or float(o.get("stopPrice", 0))
            asset, amount = (quote, left * px) if o["side"] == "BUY" else (base, left)
            out[asset] = out.get(asset, 0.0) + amount
        return out

    def trade(self, symbol: str, price: float, qty: float | None = None) -> list[str]:
        """A trade prints at ``price`` (``qty`` of liquidity; None: unlimited): the last price moves
        there, stops whose trigger it meets fire (a stop-market fills at ``price``, a stop-limit
        rests as a limit, taking at ``price`` when marketable), then resting limits it trades
        through fill at their own price, oldest first. Returns the client ids that traded."""
        with self._lock:
            self.prices[symbol] = price
            p, left = dec(price), None if qty is None else dec(qty)
            traded: list[str] = []

            def take(order: dict, at: float, *, maker: bool) -> None:
                nonlocal left
                rest = dec(order["origQty"]) - dec(order["executedQty"])
                amount = rest if left is None else min(rest, left)
                if amount > 0:
                    self._fill(order, at, qty=float(amount), maker=maker)
                    traded.append(order["clientOrderId"])
                    left = None if left is None else left - amount

            mine = [o for o in self.book if o["symbol"] == symbol and o["status"] in OPEN]
            for order in [o for o in mine if o["_armed"]]:
                if triggered(STOPS[order["type"]], order["side"], dec(order["stopPrice"]), p):
                    order.update(_armed=False, workingTime=int(time.time() * 1000))
                    if order["type"] in ("STOP_LOSS", "TAKE_PROFIT") or marketable(
                        order["side"], dec(order["price"]), p
                    ):
                        take(order, price, maker=False)  # fired: it takes at the trade's price
            for order in mine:
                if order["status"] not in OPEN or order["_armed"] or order["type"] == "MARKET":
                    continue
                if order["type"] in ("STOP_LOSS", "TAKE_PROFIT"):  # fired earlier, part still to fill
                    take(order, price, maker=False)
                elif marketable(order["side"], dec(order["price"]), p):
                    take(order, float(order["price"]), maker=True)  # traded through: filled at its limit
            return traded

    def fill_held(self, *, part: float = 1.0) -> list[str]:
        """Fill ``part`` of what every resting market order has left (1.0: all of it, at once; less:
        a partial fill, PARTIALLY_FILLED) at the current prices; returns their client order ids."""
        with self._lock:
            held = [o for o in self.book if o["status"] in OPEN and o["type"] == "MARKET"]
            for order in held:
                left = float(order["origQty"]) - float(order["executedQty"])
                self._fill(order, self.prices[order["symbol"]], qty=left if part >= 1.0 else round(left * part, 5))
            return [o["clientOrderId"] for o in held]

    def _fill(self, order: dict, price: float, *, qty: float | None = None, maker: bool = False) -> None:
        """Fill ``qty`` (all that is left when None) of ``order`` at ``price``: one trade, id
        ``orderId * 10 + n``; the commission (0.1%) is charged in the quote asset."""
        qty = round(float(order["origQty"]) - float(order["executedQty"]) if qty is None else qty, 8)
        now, trade_id = int(time.time() * 1000), order["orderId"] * 10 + len(order["_trades"])
        notional, fee = f"{qty * price:.8f}", f"{qty * price * 0.001:.8f}"
        base, quote = self._assets(order["symbol"])
        order["fills"].append(
            {"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": fee, "commissionAsset": quote}
            | {"tradeId": trade_id}
        )
        order["_trades"].append(
            {
                "symbol": order["symbol"],
                "id": trade_id,
                "orderId": order["orderId"],
                "orderListId": -1,
                "price": f"{price:.8f}",
                "qty": f"{qty:.8f}",
                "quoteQty": notional,
                "commission": fee,
                "commissionAsset": quote,
                "time": now,
                "isBuyer": order["side"] == "BUY",
                "isMaker": maker,
                "isBestMatch": True,
            }
        )
        executed = round(float(order["executedQty"]) + qty, 8)
        done = executed >= float(order["origQty"]) - 1e-12
        order.update(
            status="FILLED" if done else "PARTIALLY_FILLED",
            executedQty=f"{executed:.8f}",
            cummulativeQuoteQty=f"{float(order['cummulativeQuoteQty']) + float(notional):.8f}",
            updateTime=now,
        )
        sign = 1.0 if order["side"] == "BUY" else -1.0
        self.balances[base] = self.balances.get(base, 0.0) + sign * qty
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * float(notional) - float(fee)

    def _find(self, q: dict, *, open_only: bool) -> dict | None:
        now = time.monotonic()
        cid, oid = q.get("origClientOrderId"), q.get("orderId")
        if not cid and not oid:
            raise Reject(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
        match = [
            o
            for o in self.book
            if o["symbol"] == q.get("symbol")
            and o["_visible_at"] <= now
            and (o["clientOrderId"] == cid or str(o["orderId"]) == oid)
            and (o["status"] in OPEN or not open_only)
        ]
        return match[-1] if match else None

    def _cancel(self, q: dict) -> dict:
        order = self._find(q, open_only=True)
        if order is None:
            raise Reject(-2011, "Unknown order sent.")
        now = int(time.time() * 1000)
        order.update(status="CANCELED", updateTime=now)
        reply = _public(order) | {
            "origClientOrderId": order["clientOrderId"],
            "clientOrderId": q.get("newClientOrderId") or f"cancel-{order['orderId']}",
            "transactTime": now,
        }
        return {k: v for k, v in reply.items() if k not in ("time", "updateTime", "workingTime")}

    def _cancel_replace(self, q: dict) -> dict:
        """Binance's cancel-replace: cancel, then (unless STOP_ON_FAILURE stops it) place the new order."""
        mode = _mandatory(q, "cancelReplaceMode")
        target = {"symbol": q.get("symbol"), "orderId": q.get("cancelOrderId"), "origClientOrderId": None}
        target["origClientOrderId"] = q.get("cancelOrigClientOrderId")
        result = {"cancelResult": "SUCCESS", "newOrderResult": "NOT_ATTEMPTED"}
        try:
            result["cancelResponse"] = self._cancel(target)
        except Reject as refused:
            result.update(cancelResult="FAILURE", cancelResponse=refused.body(), newOrderResponse=None)
            if mode == "STOP_ON_FAILURE":
                raise Reject(-2022, "Order cancel-replace failed.", data=result) from None
        new = {k: v for k, v in q.items() if not k.startswith("cancel") and k not in ("signature", "timestamp")}
        try:
            result.update(newOrderResult="SUCCESS", newOrderResponse=self._reply(self._new_order(new)))
        except Reject as refused:
            result.update(newOrderResult="FAILURE", newOrderResponse=refused.body())
        if result["cancelResult"] == "FAILURE" and result["newOrderResult"] == "FAILURE":
            raise Reject(-2022, "Order cancel-replace failed.", data=result)
        if "FAILURE" in (result["cancelResult"], result["newOrderResult"]):
            raise Reject(-2021, "Order cancel-replace partially failed.", status=409, data=result)
        return result

    def _info(self, symbol: str) -> dict:
        info = next((s for s in self.exchange_info["symbols"] if s["symbol"] == symbol), None)
        if info is None:
            raise Reject(-1121, "Invalid symbol.")
        return info

    def _assets(self, symbol: str) -> tuple[str, str]:
        info = self._info(symbol)
        return info["baseAsset"], info["quoteAsset"]

    def read(self, path: str, q: dict) -> Reply:
        """A signed read, as Binance answers it; orders not yet visible are left out."""
        with self._lock:
            now = time.monotonic()
            seen = [o for o in self.book if o["_visible_at"] <= now]
            if path == "/api/v3/account":
                locked = self._locked()
                rows = [
                    {"asset": a, "free": f"{v - locked.get(a, 0.0):.8f}", "locked": f"{locked.get(a, 0.0):.8f}"}
                    for a, v in sorted(self.balances.items())
                ]
                return 200, {
                    "makerCommission": 10,
                    "takerCommission": 10,
                    "canTrade": True,
                    "accountType": "SPOT",
                    "updateTime": int(time.time() * 1000),
                    "permissions": ["SPOT"],
                    "balances": rows,
                }
            mine = [o for o in seen if o["symbol"] == q.get("symbol")]
            start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
            limit = min(int(q.get("limit", 500)), 1000)
            if path == "/api/v3/order":
                try:
                    found = self._find(q, open_only=False)
                except Reject as refused:
                    return refused.status, refused.body()
                return (200, _public(found)) if found else (400, {"code": -2013, "msg": "Order does not exist."})
            if path == "/api/v3/openOrders":
                return 200, [_public(o) for o in mine if o["status"] in OPEN]
            if path == "/api/v3/allOrders":
                first = int(q.get("orderId", 0))
                return 200, [_public(o) for o in mine if start <= o["time"] <= end and o["orderId"] >= first][:limit]
            trades = [
                t
                for o in mine
                for t in o["_trades"]
                if str(t["orderId"]) == q.get("orderId", str(t["orderId"]))
                and start <= t["time"] <= end
                and t["id"] >= int(q.get("fromId", 0))
            ]
            return 200, sorted(trades, key=lambda t: t["id"])[:limit]

    def _klines(self, q: dict) -> Reply:
        symbol, interval = q.get("symbol"), q.get("interval")
        known = {s["symbol"] for s in self.exchange_info["symbols"]}
        if symbol not in known:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if interval not in INTERVAL_MS:
            return 400, {"code": -1120, "msg": "Invalid interval."}
        frame = self.candles.get((symbol, interval))
        if frame is None:
            return 200, []
        limit = min(int(q.get("limit", 500)), 1000)
        if "startTime" in q:
            frame = frame.filter(pl.col("ts") >= int(q["startTime"]))
        if "endTime" in q:
            frame = frame.filter(pl.col("ts") <= int(q["endTime"]))
        return 200, kline_rows(frame.sort("ts").head(limit), INTERVAL_MS[interval])

    def klines_requests(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/api/v3/klines")]
