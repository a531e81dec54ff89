"""A loopback HTTP server that speaks Binance's spot REST format (the only stand-in allowed).

It serves the recorded ``exchangeInfo`` capture and ``/api/v3/klines`` built from real
candles, with Binance's pagination (startTime/endTime/limit), error bodies and status
codes. Faults are scripted per klines request number (429, 5xx, slow responses) so tests
can break a backfill in the middle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import polars as pl

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "binance"
INTERVAL_MS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000, "4h": 14_400_000,
               "1d": 86_400_000}


def kline_rows(candles: pl.DataFrame, interval_ms: int) -> list[list]:
    """Candles as Binance kline arrays (prices as strings, as the exchange sends them)."""
    rows = []
    for ts, o, h, lo, c, v in candles.select("ts", "open", "high", "low", "close", "volume").iter_rows():
        rows.append([ts, f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{v:.8f}",
                     ts + interval_ms - 1, f"{v * c:.8f}", 100, f"{v / 2:.8f}", f"{v * c / 2:.8f}", "0"])
    return rows


@dataclass
class Fault:
    status: int
    body: dict
    delay_s: float = 0.0


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
    orders: dict[str, dict] = field(default_factory=dict)  # clientOrderId -> the venue's order
    exchange_info: dict = field(default_factory=lambda: json.loads((FIXTURES / "exchange_info.json").read_text()))

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

            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.requests.append(self.path)
                if url.path == "/api/v3/exchangeInfo":
                    return self._send(200, server.exchange_info)
                if url.path == "/api/v3/time":
                    return self._send(200, {"serverTime": int(time.time() * 1000)})
                if url.path == "/api/v3/ping":
                    return self._send(200, {})
                if url.path in ("/api/v3/order", "/api/v3/myTrades"):
                    params = self._signed(query)
                    if params is None:
                        return None
                    return self._order_query(url.path, params)
                if url.path == "/api/v3/klines":
                    n = sum(1 for r in server.requests if r.startswith("/api/v3/klines"))
                    fault = server.faults.get(n)
                    if fault:
                        time.sleep(fault.delay_s)
                        headers = {"Retry-After": "1"} if fault.status == 429 else None
                        return self._send(fault.status, fault.body, headers)
                    return self._klines(query)
                return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})

            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                query = {k: v[0] for k, v in parse_qs(url.query).items()} | {
                    k: v[0] for k, v in parse_qs(body).items()}
                server.requests.append(f"POST {self.path} {body}")
                if url.path != "/api/v3/order":
                    return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})
                params = self._signed(query, raw=url.query or body)
                if params is None:
                    return None
                n = sum(1 for r in server.requests if r.startswith("POST /api/v3/order"))
                fault = server.order_faults.get(n)
                if fault and fault.status != 200:
                    return self._send(fault.status, fault.body)
                status, reply = server.place(params)
                if fault:  # the order is placed, but the answer comes too late for the client
                    time.sleep(fault.delay_s)
                return self._send(status, reply)

            def _signed(self, q: dict, raw: str | None = None) -> dict | None:
                """Binance's HMAC-SHA256 request signing, checked as the exchange does."""
                if self.headers.get("X-MBX-APIKEY") != server.api_key:
                    self._send(401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."})
                    return None
                payload = (raw if raw is not None else urlparse(self.path).query).rsplit("&signature=", 1)[0]
                expected = hmac.new(server.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if q.get("signature") != expected:
                    self._send(400, {"code": -1022, "msg": "Signature for this request is not valid."})
                    return None
                return q

            def _order_query(self, path: str, q: dict) -> None:
                order = server.orders.get(q.get("origClientOrderId", "")) or next(
                    (o for o in server.orders.values() if str(o["orderId"]) == q.get("orderId")), None)
                if path == "/api/v3/myTrades":
                    trades = [t for o in server.orders.values() for t in o["_trades"]
                              if o["symbol"] == q.get("symbol") and str(o["orderId"]) == q.get("orderId", str(o["orderId"]))]
                    return self._send(200, trades)
                if order is None:
                    return self._send(400, {"code": -2013, "msg": "Order does not exist."})
                return self._send(200, {k: v for k, v in order.items() if k not in ("fills", "_trades")})

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

    def place(self, q: dict) -> tuple[int, dict]:
        """Fill a MARKET order at once at ``prices[symbol]`` (Binance's FULL response)."""
        cid = q.get("newClientOrderId") or f"auto-{len(self.orders) + 1}"
        if cid in self.orders:
            return 400, {"code": -2010, "msg": "Duplicate order sent."}
        symbol, side = q["symbol"], q["side"]
        if q.get("type") != "MARKET" or symbol not in self.prices:
            return 400, {"code": -1013, "msg": "Filter failure: this loopback fills MARKET orders of priced symbols"}
        price = self.prices[symbol]
        step = next(float(f["stepSize"]) for s in self.exchange_info["symbols"] if s["symbol"] == symbol
                    for f in s["filters"] if f["filterType"] == "LOT_SIZE")
        # a quote amount buys what it pays for, in whole lot steps (as Binance does)
        qty = float(q["quantity"]) if "quantity" in q else math.floor(float(q["quoteOrderQty"]) / price / step) * step
        qty = round(qty, 8)
        order_id = 1000 + len(self.orders)
        now = int(time.time() * 1000)
        fill = {"price": f"{price:.8f}", "qty": f"{qty:.8f}", "commission": f"{qty * price * 0.001:.8f}",
                "commissionAsset": "USDT", "tradeId": order_id * 10}
        trade = {"symbol": symbol, "id": order_id * 10, "orderId": order_id, "orderListId": -1,
                 "price": fill["price"], "qty": fill["qty"], "quoteQty": f"{qty * price:.8f}",
                 "commission": fill["commission"], "commissionAsset": "USDT", "time": now,
                 "isBuyer": side == "BUY", "isMaker": False, "isBestMatch": True}
        order = {"symbol": symbol, "orderId": order_id, "orderListId": -1, "clientOrderId": cid,
                 "transactTime": now, "time": now, "updateTime": now, "price": "0.00000000",
                 "origQty": f"{qty:.8f}", "executedQty": f"{qty:.8f}", "cummulativeQuoteQty": f"{qty * price:.8f}",
                 "status": "FILLED", "timeInForce": "GTC", "type": "MARKET", "side": side,
                 "workingTime": now, "fills": [fill], "_trades": [trade], "selfTradePreventionMode": "NONE"}
        self.orders[cid] = order
        return 200, {k: v for k, v in order.items() if k != "_trades"}

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def klines_requests(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/api/v3/klines")]

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def rate_limited() -> Fault:
    return Fault(429, {"code": -1003, "msg": "Too many requests; current limit is 1200 request weight per 1 MINUTE."})


def server_error(status: int = 503) -> Fault:
    return Fault(status, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})
