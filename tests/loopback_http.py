"""The HTTP side shared by the loopback Binance servers (spot and USDⓈ-M futures).

Rules, as Binance applies them:

* Signed requests carry ``X-MBX-APIKEY`` and an HMAC-SHA256 ``signature`` of the query string
  (GET, DELETE) or of the form body (POST, PUT); a wrong key is 401 ``-2015``, a wrong
  signature 400 ``-1022``. A server that is ``down`` answers every signed request 503 ``-1001``.
* Every request is logged in ``requests``: a GET as its path with query (``/api/v3/order?...``),
  anything else as ``"METHOD path body"`` (``POST /api/v3/order symbol=...``).
* ``path_faults["METHOD /path"][n]`` scripts the n-th request (1-based) to that method and
  path: refused before it is handled, or with ``Fault(executes=True)`` handled and then
  answered with the fault (the reply is lost, not the action), or answered after ``delay_s``.

:func:`binance_error_classes` makes ccxt classify the loopback's errors as it does the real
hosts' (ccxt picks a market type's error map by the URL's host name, which a loopback URL
never matches).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse, urlsplit


@dataclass
class Fault:
    status: int
    body: dict
    delay_s: float = 0.0
    executes: bool = False  # an error status after the request was acted on: only the reply is lost


class Reject(Exception):
    """A request the venue refuses: ``status`` and Binance's ``{"code", "msg"}`` body."""

    def __init__(self, code: int, msg: str, *, status: int = 400, data: dict | None = None):
        super().__init__(msg)
        self.status, self.code, self.msg, self.data = status, code, msg, data

    def body(self) -> dict:
        return {"code": self.code, "msg": self.msg} | ({"data": self.data} if self.data is not None else {})


Reply = tuple[int, Any]  # status, JSON body


def rate_limited() -> Fault:
    return Fault(429, {"code": -1003, "msg": "Too many requests; current limit is 1200 request weight per 1 MINUTE."})


def server_error(status: int = 503) -> Fault:
    return Fault(status, {"code": -1001, "msg": "Internal error; unable to process your request. Please try again."})


class LoopbackHttp:
    """Base of a loopback server: subclasses set ``api_key``, ``secret``, ``requests``,
    ``path_faults``, ``down``, ``down_paths`` (dataclass fields) and implement :meth:`route`."""

    api_key: str
    secret: str
    requests: list[str]
    path_faults: dict[str, dict[int, Fault]]
    down: bool
    down_paths: set[str]

    def signed(self, method: str, path: str) -> bool:  # pragma: no cover - overridden
        raise NotImplementedError

    def route(self, method: str, path: str, params: dict[str, str]) -> Reply:  # pragma: no cover - overridden
        raise NotImplementedError

    def unsigned(self, method: str, path: str, params: dict[str, str], raw_path: str) -> tuple | None:
        """Public endpoints (answered without a signature): ``(status, body[, headers])``; None: not one."""
        return None

    def received(self, method: str, path: str, params: dict[str, str]) -> None:
        """A signed request that reached the venue (before any scripted fault refuses it)."""

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
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

            def _handle(self) -> None:
                url = urlparse(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                raw = url.query if self.command in ("GET", "DELETE") or not body else body
                params = {k: v[0] for k, v in parse_qs(url.query).items()} | {
                    k: v[0] for k, v in parse_qs(body).items()
                }
                server.requests.append(self.path if self.command == "GET" else f"{self.command} {self.path} {body}")
                public = server.unsigned(self.command, url.path, params, self.path)
                if public is not None:
                    return self._send(*public)
                if not server.signed(self.command, url.path):
                    return self._send(404, {"code": -1, "msg": f"unknown path {url.path}"})
                refused = self._check(params, raw)
                if refused is not None:
                    return self._send(*refused)
                if self.command == "GET" and url.path in server.down_paths:
                    return self._send(503, {"code": -1001, "msg": "Service unavailable."})
                server.received(self.command, url.path, params)
                key = f"{self.command} {url.path}"
                with server._count_lock:
                    server._counts[key] += 1
                    n = server._counts[key]
                fault = server.path_faults.get(key, {}).get(n)
                if fault and not fault.executes and fault.status != 200:
                    time.sleep(fault.delay_s)
                    headers = {"Retry-After": "1"} if fault.status == 429 else None
                    return self._send(fault.status, fault.body, headers)
                status, reply = server.route(self.command, url.path, params)
                if fault:  # acted on, but the answer is lost (too late, or an error)
                    time.sleep(fault.delay_s)
                    if fault.status != 200:
                        return self._send(fault.status, fault.body)
                return self._send(status, reply)

            do_GET = do_POST = do_DELETE = do_PUT = _handle

            def _check(self, q: dict, raw: str) -> Reply | None:
                """Binance's HMAC-SHA256 request signing, checked as the exchange does."""
                if server.down:
                    return 503, {"code": -1001, "msg": "Service unavailable."}
                if self.headers.get("X-MBX-APIKEY") != server.api_key:
                    return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
                payload = raw.rsplit("&signature=", 1)[0]
                expected = hmac.new(server.secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
                if q.get("signature") != expected:
                    return 400, {"code": -1022, "msg": "Signature for this request is not valid."}
                return None

        self._counts: Counter = Counter()  # signed requests handled per "METHOD /path"
        self._count_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def signed_reads(self, path: str) -> list[str]:
        """The requests to one signed read endpoint (e.g. ``/api/v3/allOrders``), in order."""
        return [r for r in self.requests if r.startswith(path + "?")]

    def calls(self, method: str, path: str) -> list[dict[str, str]]:
        """The parameters of every ``method path`` request (POST, PUT, DELETE), in order."""
        out = []
        for r in self.requests:
            verb, _, rest = r.partition(" ")
            target, _, body = rest.partition(" ")
            if verb == method and urlparse(target).path == path:
                query = {k: v[0] for k, v in parse_qs(urlparse(target).query).items()}
                out.append(query | {k: v[0] for k, v in parse_qs(body).items()})
        return out

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def binance_error_classes(exchange: Any) -> Any:
    """Make ``exchange`` (a ccxt binance client on a loopback URL) pick its error maps by the
    request path as it does by host on Binance: ``/api/`` is spot (api.binance.com), ``/fapi/``
    linear (fapi.binance.com). Without it only ccxt's common map applies (e.g. ``-2019 Margin is
    insufficient`` would be a plain ``ExchangeError`` instead of ``InsufficientFunds``)."""
    maps: dict[str, dict] = exchange.exceptions

    def by_path(url: str | None, exact_or_broad: str) -> dict:
        path = urlsplit(url or "").path
        market = "linear" if path.startswith("/fapi/") else "spot" if path.startswith("/api/") else None
        return (maps.get(market) or {}).get(exact_or_broad, {}) if market else {}

    exchange.get_exceptions_by_url = by_path
    return exchange
