"""A loopback HTTP server that speaks Binance's spot REST format (the only stand-in allowed).

It serves the recorded ``exchangeInfo`` capture and ``/api/v3/klines`` built from real
candles, with Binance's pagination (startTime/endTime/limit), error bodies and status
codes. Faults are scripted per klines request number (429, 5xx, slow responses) so tests
can break a backfill in the middle.
"""

from __future__ import annotations

import json
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
                self.wfile.write(data)

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
                if url.path == "/api/v3/klines":
                    n = sum(1 for r in server.requests if r.startswith("/api/v3/klines"))
                    fault = server.faults.get(n)
                    if fault:
                        time.sleep(fault.delay_s)
                        headers = {"Retry-After": "1"} if fault.status == 429 else None
                        return self._send(fault.status, fault.body, headers)
                    return self._klines(query)
                return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})

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
