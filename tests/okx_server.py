"""A loopback HTTP server that speaks OKX's API v5 REST format (spot), for ccxt's ``okx`` client.

Public: ``/api/v5/public/time``, ``/api/v5/public/instruments?instType=SPOT`` (the fixture in
``tests/fixtures/exchange/okx``), ``/api/v5/market/candles`` and ``history-candles`` (newest
first; ``after``: older than, ``before``: newer than, ``limit`` at most 300), built from real
candles. Every reply is OKX's envelope ``{"code": "0", "msg": "", "data": [...]}``.

Signed (OKX's rules, checked as the exchange checks them): headers ``OK-ACCESS-KEY``,
``OK-ACCESS-PASSPHRASE``, ``OK-ACCESS-TIMESTAMP`` (ISO 8601, at most 30 s off the server's
clock) and ``OK-ACCESS-SIGN``, the base64 HMAC-SHA256 of ``timestamp + METHOD + path[?query] +
body`` with the secret. A wrong key is 401 ``50111``, a wrong passphrase ``50105``, a stale
timestamp ``50102``, a wrong signature ``50113``; ``down`` answers 503 ``50001``.

Trading (``tdMode=cash`` spot): ``POST /api/v5/trade/order`` and ``batch-orders`` (what ccxt
sends by default: a list of one), ``cancel-order``; ``GET /api/v5/trade/order`` (by ``ordId``
or ``clOrdId``; unknown: ``51603``), ``orders-pending``, ``orders-history``, ``fills`` and
``fills-history`` (``instId``, ``ordId``, ``begin``/``end``), ``/api/v5/account/balance``.
Order types ``market``, ``limit``, ``post_only``, ``ioc``, ``fok``; a spot market buy with
``tgtCcy=quote_ccy`` spends ``sz`` of the quote asset (whole lot steps). Refusals carry OKX's
``sCode`` inside a ``code: "1"`` reply: ``51000`` (a parameter: a ``clOrdId`` that is not 1-32
letters and digits, a price off the tick), ``51001`` (unknown instrument), ``51008``
(insufficient balance), ``51016`` (duplicate ``clOrdId``), ``51020`` (below ``minSz``),
``51121`` (not a multiple of ``lotSz``), ``51400``/``51401``/``51402`` (cancel of an order that
is unknown, canceled or filled).

Matching as the Binance loopback (``tests/binance_rules.py``): one last price per instrument; a
market order and a marketable limit fill at once at it as a taker, other limits rest until
:meth:`OkxLoopback.trade` prints through them (maker, at their own price); a marketable
``post_only`` is canceled. Fees are OKX's regular spot rates (taker 0.15%, maker 0.10%, what
ccxt's ``okx`` markets list), charged in the quote asset (as the Binance loopback; OKX itself
takes a buy's fee in the base asset). Balances (``balances``, totals) move with every fill.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import polars as pl

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "okx"
BARS = {"1m": 60_000, "5m": 300_000, "15m": 900_000, "1H": 3_600_000, "4H": 14_400_000, "1Dutc": 86_400_000}
OPEN = ("live", "partially_filled")
CLIENT_ID = re.compile(r"[A-Za-z0-9]{1,32}")
SIGNED = {
    ("POST", "/api/v5/trade/order"),
    ("POST", "/api/v5/trade/batch-orders"),
    ("POST", "/api/v5/trade/cancel-order"),
    ("GET", "/api/v5/trade/order"),
    ("GET", "/api/v5/trade/orders-pending"),
    ("GET", "/api/v5/trade/orders-history"),
    ("GET", "/api/v5/trade/fills"),
    ("GET", "/api/v5/trade/fills-history"),
    ("GET", "/api/v5/account/balance"),
}


class Refused(Exception):
    """An order the venue refuses: OKX's ``sCode`` and ``sMsg``."""

    def __init__(self, code: str, msg: str):
        super().__init__(msg)
        self.code, self.msg = code, msg


def ok(data: list) -> dict:
    return {"code": "0", "msg": "", "data": data}


def candle_rows(candles: pl.DataFrame) -> list[list[str]]:
    """Candles as OKX arrays, newest first: ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm."""
    rows = []
    for ts, o, h, lo, c, v in (
        candles.sort("ts", descending=True).select("ts", *"open high low close volume".split()).rows()
    ):
        rows.append([str(ts), *(f"{x:.8f}" for x in (o, h, lo, c, v)), f"{v * c:.8f}", f"{v * c:.8f}", "1"])
    return rows


def _steps(value: Decimal, step: Decimal) -> bool:
    return step == 0 or value % step == 0


@dataclass
class OkxLoopback:
    """Start with ``with OkxLoopback(...) as server:``; ``server.url`` is the REST base URL."""

    candles: dict[tuple[str, str], pl.DataFrame] = field(default_factory=dict)  # (BTC-USDT, 1m) -> candles
    prices: dict[str, float] = field(default_factory=dict)  # instId -> last trade price
    balances: dict[str, float] = field(default_factory=dict)  # ccy -> total balance
    api_key: str = "okx-loopback-key"
    secret: str = "okx-loopback-secret"
    passphrase: str = "okx-loopback-passphrase"
    taker_fee: float = 0.0015
    maker_fee: float = 0.0010
    down: bool = False
    requests: list[str] = field(default_factory=list)
    orders: dict[str, dict] = field(default_factory=dict)  # clOrdId -> order
    book: list[dict] = field(default_factory=list)  # every order placed, oldest first
    fills: list[dict] = field(default_factory=list)  # every fill, oldest first
    creates: Counter = field(default_factory=Counter)  # clOrdId -> create requests received
    instruments: list[dict] = field(
        default_factory=lambda: json.loads((FIXTURES / "instruments_spot.json").read_text())["data"]
    )

    def __post_init__(self) -> None:
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ HTTP
    def __enter__(self) -> OkxLoopback:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _handle(self) -> None:
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server.requests.append(f"{self.command} {self.path} {body}".rstrip())
                if (self.command, url.path) not in SIGNED:
                    return self._send(*server.public(url.path, query))
                refused = server.check_signature(self.command, self.path, body, self.headers)
                if refused is not None:
                    return self._send(*refused)
                payload = json.loads(body) if body else query
                return self._send(200, server.private(self.command, url.path, payload))

            do_GET = do_POST = _handle

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def check_signature(self, method: str, path: str, body: str, headers: Any) -> tuple[int, dict] | None:
        """OKX's request signing (header names in any case); None when the request may go on."""
        if self.down:
            return 503, {"code": "50001", "msg": "Service temporarily unavailable. Try again later", "data": []}
        if headers.get("OK-ACCESS-KEY") != self.api_key:
            return 401, {"code": "50111", "msg": "Invalid OK-ACCESS-KEY", "data": []}
        if headers.get("OK-ACCESS-PASSPHRASE") != self.passphrase:
            return 401, {"code": "50105", "msg": "Invalid OK-ACCESS-PASSPHRASE", "data": []}
        stamp = headers.get("OK-ACCESS-TIMESTAMP") or ""
        try:
            sent = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        except ValueError:
            return 401, {"code": "50112", "msg": "Invalid OK-ACCESS-TIMESTAMP", "data": []}
        if abs(time.time() - sent) > 30:
            return 401, {"code": "50102", "msg": "Timestamp request expired", "data": []}
        digest = hmac.new(self.secret.encode(), f"{stamp}{method}{path}{body}".encode(), hashlib.sha256).digest()
        if headers.get("OK-ACCESS-SIGN") != base64.b64encode(digest).decode():
            return 401, {"code": "50113", "msg": "Invalid Sign", "data": []}
        return None

    # ------------------------------------------------------------------ public
    def public(self, path: str, q: dict[str, str]) -> tuple[int, dict]:
        if path == "/api/v5/public/time":
            return 200, ok([{"ts": str(int(time.time() * 1000))}])
        if path == "/api/v5/public/instruments":
            if q.get("instType") != "SPOT":
                return 200, ok([])  # this venue lists spot markets only
            return 200, ok(self.instruments)
        if path in ("/api/v5/market/candles", "/api/v5/market/history-candles"):
            bar = q.get("bar", "1m")
            if bar not in BARS:
                return 400, {"code": "51000", "msg": "Parameter bar error", "data": []}
            frame = self.candles.get((q.get("instId", ""), bar))
            if frame is None:
                return 200, ok([])
            if "after" in q:
                frame = frame.filter(pl.col("ts") < int(q["after"]))
            if "before" in q:
                frame = frame.filter(pl.col("ts") > int(q["before"]))
            limit = min(int(q.get("limit", 100)), 300)
            return 200, ok(candle_rows(frame.sort("ts").tail(limit)))
        return 404, {"code": "50015", "msg": f"unknown path {path}", "data": []}

    # ------------------------------------------------------------------ signed
    def private(self, method: str, path: str, q: dict | list) -> dict:
        with self._lock:
            if method == "POST" and path in ("/api/v5/trade/order", "/api/v5/trade/batch-orders"):
                placed = [self._place(o) for o in (q if isinstance(q, list) else [q])]
                failed = all(p["sCode"] != "0" for p in placed)
                return {
                    "code": "1" if failed else "0",
                    "msg": "All operations failed" if failed else "",
                    "data": placed,
                }
            assert isinstance(q, dict)
            if path == "/api/v5/trade/cancel-order":
                return self._cancel(q)
            if path == "/api/v5/trade/order":
                found = self._find(q)
                if found is None:
                    return {"code": "51603", "msg": "Order does not exist", "data": []}
                return ok([dict(found)])
            if path == "/api/v5/trade/orders-pending":
                rows = [o for o in self.book if o["state"] in OPEN and q.get("instId") in (None, o["instId"])]
                return ok([dict(o) for o in reversed(rows)])
            if path == "/api/v5/trade/orders-history":
                rows = [
                    o
                    for o in self.book
                    if o["state"] not in OPEN
                    and q.get("instId") in (None, o["instId"])
                    and q.get("state") in (None, o["state"])
                ]
                return ok([dict(o) for o in reversed(rows)][: int(q.get("limit", 100))])
            if path in ("/api/v5/trade/fills", "/api/v5/trade/fills-history"):
                return ok(self._fills(q))
            return ok([self._balance()])

    def _find(self, q: dict) -> dict | None:
        if q.get("ordId"):
            return next((o for o in self.book if o["ordId"] == q["ordId"] and o["instId"] == q.get("instId")), None)
        found = self.orders.get(q.get("clOrdId") or "")
        return found if found is not None and found["instId"] == q.get("instId") else None

    def _fills(self, q: dict) -> list[dict]:
        rows = [
            f
            for f in self.fills
            if q.get("instId") in (None, f["instId"])
            and q.get("ordId") in (None, f["ordId"])
            and int(f["ts"]) >= int(q.get("begin", 0))
            and int(f["ts"]) <= int(q.get("end", 2**62))
        ]
        return list(reversed(rows))[: min(int(q.get("limit", 100)), 100)]

    def _balance(self) -> dict:
        locked = self._locked()
        now = str(int(time.time() * 1000))
        details = [
            {
                "ccy": ccy,
                "eq": f"{total:.10f}",
                "cashBal": f"{total:.10f}",
                "availBal": f"{total - locked.get(ccy, 0.0):.10f}",
                "availEq": f"{total - locked.get(ccy, 0.0):.10f}",
                "frozenBal": f"{locked.get(ccy, 0.0):.10f}",
                "ordFrozen": f"{locked.get(ccy, 0.0):.10f}",
                "uTime": now,
            }
            for ccy, total in sorted(self.balances.items())
        ]
        return {"uTime": now, "totalEq": "", "details": details}

    def _locked(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for o in self.book:
            if o["state"] in OPEN and o["ordType"] != "market":
                inst = self._instrument(o["instId"])
                left = float(o["sz"]) - float(o["accFillSz"])
                ccy, amount = (
                    (inst["quoteCcy"], left * float(o["px"])) if o["side"] == "buy" else (inst["baseCcy"], left)
                )
                out[ccy] = out.get(ccy, 0.0) + amount
        return out

    def _instrument(self, inst_id: str) -> dict:
        inst = next((i for i in self.instruments if i["instId"] == inst_id), None)
        if inst is None:
            raise Refused("51001", "Instrument ID does not exist")
        return inst

    # ------------------------------------------------------------------ the venue
    def _place(self, q: dict) -> dict:
        cid = str(q.get("clOrdId") or "")
        self.creates[cid] += 1
        try:
            order = self._new_order(q, cid)
        except Refused as refused:
            return {"clOrdId": cid, "ordId": "", "sCode": refused.code, "sMsg": refused.msg, "tag": "", "ts": ""}
        return {
            "clOrdId": cid,
            "ordId": order["ordId"],
            "sCode": "0",
            "sMsg": "Order placed",
            "tag": "",
            "ts": order["cTime"],
        }

    def _new_order(self, q: dict, cid: str) -> dict:
        if cid and not CLIENT_ID.fullmatch(cid):
            raise Refused("51000", "Parameter clOrdId error")
        if cid and cid in self.orders:
            raise Refused("51016", "Duplicated client order ID")
        inst = self._instrument(str(q.get("instId")))
        inst_id, side, kind = inst["instId"], q.get("side"), q.get("ordType")
        if q.get("tdMode") != "cash":
            raise Refused("51000", "Parameter tdMode error")
        if side not in ("buy", "sell") or kind not in ("market", "limit", "post_only", "ioc", "fok"):
            raise Refused("51000", "Parameter ordType error" if side in ("buy", "sell") else "Parameter side error")
        if inst_id not in self.prices:
            raise Refused("51000", f"this loopback has no price for {inst_id}; set prices[{inst_id!r}]")
        last, tick, lot = Decimal(str(self.prices[inst_id])), Decimal(inst["tickSz"]), Decimal(inst["lotSz"])
        price = None if kind == "market" else Decimal(str(q.get("px")))
        if price is not None and (price <= 0 or not _steps(price, tick)):
            raise Refused("51000", "Parameter px error")
        size = Decimal(str(q.get("sz")))
        if kind == "market" and side == "buy" and q.get("tgtCcy") == "quote_ccy":  # sz is the quote to spend
            size = Decimal(math.floor(size / last / lot)) * lot
        elif not _steps(size, lot):
            raise Refused("51121", "Order count should be the integer multiples of the lot size")
        if size < Decimal(inst["minSz"]):
            raise Refused("51020", "Order amount should be greater than the min available amount")
        cost = size * (price if price is not None else last)
        need, ccy = (cost * Decimal(1 + self.taker_fee), inst["quoteCcy"]) if side == "buy" else (size, inst["baseCcy"])
        if float(need) > self.balances.get(ccy, 0.0) - self._locked().get(ccy, 0.0) + 1e-12:
            raise Refused("51008", f"Order failed. Insufficient {ccy} balance in account.")
        now = str(int(time.time() * 1000))
        order = {
            "instType": "SPOT", "instId": inst_id, "ordId": str(2_900_000_000_000_000_000 + len(self.book)),
            "clOrdId": cid, "tag": "", "px": "" if price is None else str(price), "sz": str(size), "ordType": kind,
            "side": side, "posSide": "net", "tdMode": "cash", "tgtCcy": "", "accFillSz": "0", "fillPx": "",
            "fillSz": "0", "fillTime": "", "tradeId": "", "avgPx": "", "state": "live", "fee": "0",
            "feeCcy": inst["quoteCcy"], "category": "normal", "reduceOnly": "false", "cTime": now, "uTime": now,
        }  # fmt: skip
        self.book.append(order)
        if cid:
            self.orders[cid] = order
        taking = price is None or (price >= last if side == "buy" else price <= last)
        if taking and kind == "post_only":
            order["state"] = "canceled"  # it would have taken liquidity
        elif taking:
            self._fill(order, last, size, maker=False)
        elif kind in ("ioc", "fok"):
            order["state"] = "canceled"
        return order

    def _fill(self, order: dict, price: Decimal, size: Decimal, *, maker: bool) -> None:
        inst = self._instrument(order["instId"])
        fee = float(price * size) * (self.maker_fee if maker else self.taker_fee)
        done = Decimal(order["accFillSz"]) + size
        avg = Decimal(order["avgPx"] or 0)
        avg = (avg * Decimal(order["accFillSz"]) + price * size) / done
        now = str(int(time.time() * 1000))
        trade_id = str(500_000_000 + len(self.fills))
        order.update(
            accFillSz=str(done), fillPx=str(price), fillSz=str(size), fillTime=now, tradeId=trade_id,
            avgPx=str(avg), fee=f"{float(order['fee']) - fee:.10f}", uTime=now,
            state="filled" if done >= Decimal(order["sz"]) else "partially_filled",
        )  # fmt: skip
        self.fills.append(
            {
                "instType": "SPOT", "instId": order["instId"], "tradeId": trade_id, "ordId": order["ordId"],
                "clOrdId": order["clOrdId"], "billId": str(700_000_000 + len(self.fills)), "tag": "",
                "fillPx": str(price), "fillSz": str(size), "side": order["side"], "posSide": "net",
                "execType": "M" if maker else "T", "feeCcy": inst["quoteCcy"], "fee": f"{-fee:.10f}", "ts": now,
            }
        )  # fmt: skip
        sign = 1.0 if order["side"] == "buy" else -1.0
        base, quote = inst["baseCcy"], inst["quoteCcy"]
        self.balances[base] = self.balances.get(base, 0.0) + sign * float(size)
        self.balances[quote] = self.balances.get(quote, 0.0) - sign * float(price * size) - fee

    def _cancel(self, q: dict) -> dict:
        found = self._find(q)
        code = "51400" if found is None else {"canceled": "51401", "filled": "51402"}.get(found["state"])
        if code is not None:
            why = {"51400": "the order does not exist", "51401": "the order is already canceled"}.get(code)
            msg = f"Cancellation failed as {why or 'the order is already completed'}."
            row = {"clOrdId": q.get("clOrdId", ""), "ordId": q.get("ordId", ""), "sCode": code, "sMsg": msg}
            return {"code": "1", "msg": "", "data": [row]}
        assert found is not None
        found.update(state="canceled", uTime=str(int(time.time() * 1000)))
        return ok([{"clOrdId": found["clOrdId"], "ordId": found["ordId"], "sCode": "0", "sMsg": ""}])

    def trade(self, inst_id: str, price: float) -> list[str]:
        """A trade prints at ``price``: the last price moves there and resting limits it trades
        through fill in full at their own price (maker), oldest first. Returns their client ids."""
        with self._lock:
            self.prices[inst_id] = price
            traded = []
            for o in self.book:
                if o["instId"] != inst_id or o["state"] not in OPEN or o["ordType"] == "market":
                    continue
                px, at = Decimal(o["px"]), Decimal(str(price))
                if (o["side"] == "buy" and at <= px) or (o["side"] == "sell" and at >= px):
                    self._fill(o, px, Decimal(o["sz"]) - Decimal(o["accFillSz"]), maker=True)
                    traded.append(o["clOrdId"])
            return traded

    def calls(self, path: str) -> list[dict]:
        """The JSON bodies sent to ``POST path`` (a batch's orders one by one), in order."""
        out: list[dict] = []
        for r in self.requests:
            verb, _, rest = r.partition(" ")
            target, _, body = rest.partition(" ")
            if verb == "POST" and urlsplit(target).path == path and body:
                sent = json.loads(body)
                out += sent if isinstance(sent, list) else [sent]
        return out
