"""A loopback HTTP server that speaks Binance's spot REST format (the only stand-in allowed).

It serves the recorded ``exchangeInfo`` capture and ``/api/v3/klines`` built from real
candles, with Binance's pagination (startTime/endTime/limit), error bodies and status
codes. Faults are scripted per klines request number (429, 5xx, slow responses) so tests
can break a backfill in the middle.

Trading (signed, HMAC-SHA256 as Binance checks it): ``POST /api/v3/order`` (MARKET orders),
``GET /api/v3/order`` (by ``origClientOrderId`` or ``orderId``), ``openOrders``, ``allOrders``
and ``myTrades`` (``symbol``, ``orderId``, ``startTime``/``endTime``, ``fromId``, ``limit``) and
``account`` (balances, moved by every fill: base +/- qty, quote -/+ notional and commission).
Realistic modes, all off by default:

* ``client_ids_unique="open"``: a client order id is refused only while an order with it
  is open, as on Binance; a filled order's id is accepted again (``"all"``: never twice).
* ``visible_after_s``: an order (and its trades) shows in queries only that long after its
  create, as a venue's read side lags its matching engine.
* ``hold_orders``: market orders rest as ``NEW`` until :meth:`BinanceLoopback.fill_held`
  (all at once, or part of them: ``PARTIALLY_FILLED``, still open).
* ``order_faults[n]`` scripts the n-th create: refused (not placed), or with
  ``Fault(executes=True)`` placed and then answered with an error, or placed and answered
  after ``delay_s`` (the client times out). Either way the reply is lost, not the order.
* ``down``: every signed request is answered 503 (the venue is unreachable).

``creates`` counts the create requests that reached the venue per client order id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import polars as pl

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "binance"
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000, "1d": 86_400_000}


def kline_rows(candles: pl.DataFrame, interval_ms: int) -> list[list]:
    """Candles as Binance kline arrays (prices as strings, as the exchange sends them)."""
    rows = []
    for ts, o, h, lo, c, v in candles.select("ts", "open", "high", "low", "close", "volume").iter_rows():
        rows.append(
            [
                ts,
                f"{o:.8f}",
                f"{h:.8f}",
                f"{lo:.8f}",
                f"{c:.8f}",
                f"{v:.8f}",
                ts + interval_ms - 1,
                f"{v * c:.8f}",
                100,
                f"{v / 2:.8f}",
                f"{v * c / 2:.8f}",
                "0",
            ]
        )
    return rows


@dataclass
class Fault:
    status: int
    body: dict
    delay_s: float = 0.0
    executes: bool = False  # an error status after the order was placed: only the reply is lost


def _public(order: dict) -> dict:
    return {k: v for k, v in order.items() if not k.startswith("_") and k != "fills"}


@dataclass
class BinanceLoopback:
    """Start with ``with BinanceLoopback(...) as server:``; ``server.url`` is the base URL."""

    candles: dict[tuple[str, str], pl.DataFrame]  # (BTCUSDT, 1d) -> candles
    faults: dict[int, Fault] = field(default_factory=dict)  # klines request number (1-based)
    requests: list[str] = field(default_factory=list)
    prices: dict[str, float] = field(default_factory=dict)  # BTCUSDT -> price market orders fill at
    order_faults: dict[int, Fault] = field(default_factory=dict)  # order-create request number (1-based)
    api_key: str = "loopback-key"
    secret: str = "loopback-secret"
    orders: dict[str, dict] = field(default_factory=dict)  # clientOrderId -> the venue's latest order with it
    book: list[dict] = field(default_factory=list)  # every order placed, oldest first
    creates: Counter = field(default_factory=Counter)  # clientOrderId -> create requests received
    balances: dict[str, float] = field(default_factory=dict)  # asset -> free balance
    client_ids_unique: str = "all"  # "all" | "open" (Binance: only among open orders)
    visible_after_s: float = 0.0
    hold_orders: bool = False
    down: bool = False
    down_paths: set[str] = field(default_factory=set)  # signed reads answered 503 (e.g. /api/v3/myTrades)
    reply_type: str = "FULL"  # "RESULT": a create's reply carries no fills (Binance's newOrderRespType)
    exchange_info: dict = field(default_factory=lambda: json.loads((FIXTURES / "exchange_info.json").read_text()))

    def __post_init__(self) -> None:
        self._lock = threading.RLock()

    def __enter__(self) -> BinanceLoopback:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: object, headers: dict | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.requests.append(self.path)
                if url.path == "/api/v3/exchangeInfo":
                    return self._send(200, server.exchange_info)
                if url.path == "/api/v3/time":
                    return self._send(200, {"serverTime": int(time.time() * 1000)})
                if url.path == "/api/v3/ping":
                    return self._send(200, {})
                if url.path in SIGNED_READS:
                    params = self._signed(query)
                    if params is None:
                        return None
                    if url.path in server.down_paths:
                        return self._send(503, {"code": -1001, "msg": "Service unavailable."})
                    return self._send(*server.read(url.path, params))
                if url.path == "/api/v3/klines":
                    n = sum(1 for r in server.requests if r.startswith("/api/v3/klines"))
                    fault = server.faults.get(n)
                    if fault:
                        time.sleep(fault.delay_s)
                        headers = {"Retry-After": "1"} if fault.status == 429 else None
                        return self._send(fault.status, fault.body, headers)
                    return self._klines(query)
                return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})

            def do_POST(self) -> None:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                query = {k: v[0] for k, v in parse_qs(url.query).items()} | {k: v[0] for k, v in parse_qs(body).items()}
                server.requests.append(f"POST {self.path} {body}")
                if url.path != "/api/v3/order":
                    return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})
                params = self._signed(query, raw=url.query or body)
                if params is None:
                    return None
                n = sum(1 for r in server.requests if r.startswith("POST /api/v3/order"))
                server.creates[params.get("newClientOrderId", "")] += 1
                fault = server.order_faults.get(n)
                if fault and fault.status != 200 and not fault.executes:
                    return self._send(fault.status, fault.body)
                status, reply = server.place(params)
                if fault:  # the order is placed, but the answer is lost (too late, or an error)
                    time.sleep(fault.delay_s)
                    if fault.status != 200:
                        return self._send(fault.status, fault.body)
                return self._send(status, reply)

            def _signed(self, q: dict, raw: str | None = None) -> dict | None:
                """Binance's HMAC-SHA256 request signing, checked as the exchange does."""
                if server.down:
                    self._send(503, {"code": -1001, "msg": "Service unavailable."})
                    return None
                if self.headers.get("X-MBX-APIKEY") != server.api_key:
                    self._send(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
                    return None
                payload = (raw if raw is not None else urlparse(self.path).query).rsplit("&signature=", 1)[0]
                expected = hmac.new(server.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if q.get("signature") != expected:
                    self._send(400, {"code": -1022, "msg": "Signature for this request is not valid."})
                    return None
                return q

            def _klines(self, q: dict) -> None:
                symbol, interval = q.get("symbol"), q.get("interval")
                known = {s["symbol"] for s in server.exchange_info["symbols"]}
                if symbol not in known:
                    return self._send(400, {"code": -1121, "msg": "Invalid symbol."})
                if interval not in INTERVAL_MS:
                    return self._send(400, {"code": -1120, "msg": "Invalid interval."})
                frame = server.candles.get((symbol, interval))
                if frame is None:
                    return self._send(200, [])
                limit = min(int(q.get("limit", 500)), 1000)
                if "startTime" in q:
                    frame = frame.filter(pl.col("ts") >= int(q["startTime"]))
                if "endTime" in q:
                    frame = frame.filter(pl.col("ts") <= int(q["endTime"]))
                return self._send(200, kline_rows(frame.sort("ts").head(limit), INTERVAL_MS[interval]))

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    # ------------------------------------------------------------------ the venue
    def place(self, q: dict) -> tuple[int, dict]:
        """Fill a MARKET order at once at ``prices[symbol]`` (Binance's FULL response), or
        rest it as NEW when ``hold_orders``."""
        with self._lock:
            cid = q.get("newClientOrderId") or f"auto-{len(self.book) + 1}"
            taken = [
                o
                for o in self.book
                if o["clientOrderId"] == cid
                and (self.client_ids_unique == "all" or o["status"] in ("NEW", "PARTIALLY_FILLED"))
            ]
            if taken:
                return 400, {"code": -2010, "msg": "Duplicate order sent."}
            symbol, side = q["symbol"], q["side"]
            if q.get("type") != "MARKET" or symbol not in self.prices:
                return 400, {
                    "code": -1013,
                    "msg": "Filter failure: this loopback fills MARKET orders of priced symbols",
                }
            price = self.prices[symbol]
            step = next(
                float(f["stepSize"])
                for s in self.exchange_info["symbols"]
                if s["symbol"] == symbol
                for f in s["filters"]
                if f["filterType"] == "LOT_SIZE"
            )
            # a quote amount buys what it pays for, in whole lot steps (as Binance does)
            qty = (
                float(q["quantity"]) if "quantity" in q else math.floor(float(q["quoteOrderQty"]) / price / step) * step
            )
            qty = round(qty, 8)
            order_id = 1000 + len(self.book)
            now = int(time.time() * 1000)
            order = {
                "symbol": symbol,
                "orderId": order_id,
                "orderListId": -1,
                "clientOrderId": cid,
                "transactTime": now,
                "time": now,
                "updateTime": now,
                "price": "0.00000000",
                "origQty": f"{qty:.8f}",
                "executedQty": "0.00000000",
                "cummulativeQuoteQty": "0.00000000",
                "status": "NEW",
                "timeInForce": "GTC",
                "type": "MARKET",
                "side": side,
                "workingTime": now,
                "fills": [],
                "_trades": [],
                "selfTradePreventionMode": "NONE",
                "_visible_at": time.monotonic() + self.visible_after_s,
            }
            self.book.append(order)
            self.orders[cid] = order
            if not self.hold_orders:
                self._fill(order, price)
            reply = {k: v for k, v in order.items() if not k.startswith("_")}
            if self.reply_type == "RESULT":
                reply.pop("fills")
            return 200, reply

    def fill_held(self, *, part: float = 1.0) -> list[str]:
        """Fill ``part`` of what every resting order has left (1.0: all of it, at once; less: a
        partial fill, PARTIALLY_FILLED) at the current prices; returns their client order ids."""
        with self._lock:
            held = [o for o in self.book if o["status"] in ("NEW", "PARTIALLY_FILLED")]
            for order in held:
                left = float(order["origQty"]) - float(order["executedQty"])
                self._fill(order, self.prices[order["symbol"]], qty=left if part >= 1.0 else round(left * part, 5))
            return [o["clientOrderId"] for o in held]

    def _fill(self, order: dict, price: float, *, qty: float | None = None) -> None:
        """Fill ``qty`` (all that is left when None) of ``order`` at ``price``: one trade, id
        ``orderId * 10 + n``; the commission (0.1%) is charged in the quote asset."""
        qty = round(float(order["origQty"]) - float(order["executedQty"]) if qty is None else qty, 8)
        now, trade_id = int(time.time() * 1000), order["orderId"] * 10 + len(order["_trades"])
        notional, fee = f"{qty * price:.8f}", f"{qty * price * 0.001:.8f}"
        base, quote = self._assets(order["symbol"])
        order["fills"].append(
            {
                "price": f"{price:.8f}",
                "qty": f"{qty:.8f}",
                "commission": fee,
                "commissionAsset": quote,
                "tradeId": trade_id,
            }
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
                "isMaker": False,
                "isBestMatch": True,
            }
        )
        executed = round(float(order["executedQty"]) + qty, 8)
        done = executed >= float(order["origQty"])
        order.update(
            status="FILLED" if done else "PARTIALLY_FILLED",
            executedQty=f"{executed:.8f}",
            cummulativeQuoteQty=f"{float(order['cummulativeQuoteQty']) + float(notional):.8f}",
            updateTime=now,
        )
        sign = 1.0 if order["side"] == "BUY" else -1.0
        self.balances[base] = self.balances.get(base, 0.0) + sign * qty
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * float(notional) - float(fee)

    def _assets(self, symbol: str) -> tuple[str, str]:
        info = next(s for s in self.exchange_info["symbols"] if s["symbol"] == symbol)
        return info["baseAsset"], info["quoteAsset"]

    def read(self, path: str, q: dict) -> tuple[int, object]:
        """A signed read, as Binance answers it; orders not yet visible are left out."""
        with self._lock:
            now = time.monotonic()
            seen = [o for o in self.book if o["_visible_at"] <= now]
            if path == "/api/v3/account":
                return 200, {
                    "makerCommission": 10,
                    "takerCommission": 10,
                    "canTrade": True,
                    "accountType": "SPOT",
                    "updateTime": int(time.time() * 1000),
                    "permissions": ["SPOT"],
                    "balances": [
                        {"asset": a, "free": f"{v:.8f}", "locked": "0.00000000"}
                        for a, v in sorted(self.balances.items())
                    ],
                }
            mine = [o for o in seen if o["symbol"] == q.get("symbol")]
            start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
            limit = min(int(q.get("limit", 500)), 1000)
            if path == "/api/v3/order":
                match = [
                    o
                    for o in mine
                    if o["clientOrderId"] == q.get("origClientOrderId") or str(o["orderId"]) == q.get("orderId")
                ]
                if not match:
                    return 400, {"code": -2013, "msg": "Order does not exist."}
                return 200, _public(match[-1])
            if path == "/api/v3/openOrders":
                return 200, [_public(o) for o in mine if o["status"] in ("NEW", "PARTIALLY_FILLED")]
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

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def klines_requests(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/api/v3/klines")]

    def signed_reads(self, path: str) -> list[str]:
        """The requests to one signed read endpoint (e.g. ``/api/v3/allOrders``), in order."""
        return [r for r in self.requests if r.startswith(path + "?")]

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


SIGNED_READS = ("/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades", "/api/v3/account")


def rate_limited() -> Fault:
    return Fault(429, {"code": -1003, "msg": "Too many requests; current limit is 1200 request weight per 1 MINUTE."})


def server_error(status: int = 503) -> Fault:
    return Fault(status, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
