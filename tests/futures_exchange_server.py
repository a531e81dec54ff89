"""A loopback HTTP server that speaks Binance's USDⓈ-M futures REST (``/fapi``) for ccxt's
``binanceusdm``: what its ``load_markets``, orders, positions, leverage, margin mode and funding
calls send (found by pointing ccxt 4.5 at it and logging the paths).

* Markets: the recorded ``/fapi/v1/exchangeInfo`` capture (BTCUSDT, ETHUSDT perpetuals),
  ``/fapi/v1/leverageBracket`` (``tests/futures_account.py``), ``/fapi/v1/premiumIndex``.
* Orders: ``/fapi/v1/order`` takes MARKET and LIMIT (GTC, IOC, FOK, GTX = post-only, refused
  with -5022 when it would take), ``reduceOnly`` (refused with -2022 unless it shrinks the
  position; never flips it: what exceeds the position expires); conditional types go to the
  algo service ``/fapi/v1/algoOrder`` (STOP_MARKET, TAKE_PROFIT_MARKET, STOP, TAKE_PROFIT;
  ``clientAlgoId``), where ccxt 4.5 sends them (Binance moved conditional orders to its algo
  service in 2025-12; ``/fapi/v1/order`` refuses them here with -4120). A fired
  algo order places its actual order (``actualOrderId``; client id = the ``clientAlgoId``) and
  is ``TRIGGERED``, then ``FINISHED`` once that order is done. Queries: ``openOrders``,
  ``allOrders``, ``userTrades`` (with ``realizedPnl``), ``openAlgoOrders``, ``allAlgoOrders``.
* Account: ``/fapi/v1/leverage``, ``/fapi/v1/marginType`` (-4046 when unchanged, -4048 with a
  position, -4047 with open orders), ``/fapi/v1/symbolConfig``, ``/fapi/v3/positionRisk`` (and
  v2), ``/fapi/v3/account``, ``/fapi/v2/balance``, ``/fapi/v1/income`` (REALIZED_PNL,
  COMMISSION, FUNDING_FEE), answered by ``tests/futures_reads.py``. Margin, liquidation and
  funding follow ``tests/futures_account.py``.
* Control hooks: :meth:`BinanceUsdmLoopback.trade` (the market trades: algo orders fire, resting
  limits fill, the mark follows unless ``marks`` pins it), :meth:`manual_order` (an order
  placed outside the session, e.g. a close on the website) and :meth:`pay_funding`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from binance_rules import check_notional, check_price, check_quantity, dec, filters, fmt, marketable, triggered
from futures_account import MAKER, TAKER, Position, apply_fill, max_leverage
from futures_reads import OPEN, UsdmAccountReads, public
from loopback_http import Fault, LoopbackHttp, Reject, Reply

FIXTURES = Path(__file__).parent / "fixtures" / "exchange" / "binanceusdm"
ALGO = {"STOP_MARKET": "stop", "STOP": "stop", "TAKE_PROFIT_MARKET": "take_profit", "TAKE_PROFIT": "take_profit"}
READS = {
    "/fapi/v1/order", "/fapi/v1/openOrders", "/fapi/v1/allOrders", "/fapi/v1/userTrades", "/fapi/v1/algoOrder",
    "/fapi/v1/openAlgoOrders", "/fapi/v1/allAlgoOrders", "/fapi/v1/leverageBracket", "/fapi/v1/symbolConfig",
    "/fapi/v2/positionRisk", "/fapi/v3/positionRisk", "/fapi/v3/account", "/fapi/v2/balance", "/fapi/v1/income",
}  # fmt: skip
WRITES = {("POST", "/fapi/v1/order"), ("DELETE", "/fapi/v1/order"), ("POST", "/fapi/v1/algoOrder")} | {
    ("DELETE", "/fapi/v1/algoOrder"),
    ("POST", "/fapi/v1/leverage"),
    ("POST", "/fapi/v1/marginType"),
}


def _mandatory(q: dict, name: str) -> str:
    if not q.get(name):
        raise Reject(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return q[name]


@dataclass
class BinanceUsdmLoopback(UsdmAccountReads, LoopbackHttp):
    """Start with ``with BinanceUsdmLoopback(prices={"BTCUSDT": 30_000.0}, balances={"USDT": 1_000.0}) as s:``."""

    prices: dict[str, float] = field(default_factory=dict)  # BTCUSDT -> last trade price
    marks: dict[str, float] = field(default_factory=dict)  # mark price (default: the last price)
    balances: dict[str, float] = field(default_factory=dict)  # margin asset -> wallet balance
    leverage: dict[str, int] = field(default_factory=dict)  # symbol -> leverage (Binance's default: 20)
    margin_type: dict[str, str] = field(default_factory=dict)  # symbol -> ISOLATED | CROSSED (default)
    positions: dict[str, Position] = field(default_factory=dict)
    funding_rates: dict[str, float] = field(default_factory=dict)
    income: list[dict] = field(default_factory=list)
    orders: dict[str, dict] = field(default_factory=dict)  # clientOrderId -> latest regular order
    book: list[dict] = field(default_factory=list)  # regular orders, oldest first
    algo_book: list[dict] = field(default_factory=list)  # conditional (algo) orders, oldest first
    creates: Counter = field(default_factory=Counter)  # client (algo) id -> create requests received
    requests: list[str] = field(default_factory=list)
    order_faults: dict[int, Fault] = field(default_factory=dict)  # n-th POST /fapi/v1/order
    path_faults: dict[str, dict[int, Fault]] = field(default_factory=dict)
    api_key: str = "loopback-key"
    secret: str = "loopback-secret"
    down: bool = False
    down_paths: set[str] = field(default_factory=set)
    exchange_info: dict = field(default_factory=lambda: json.loads((FIXTURES / "exchange_info.json").read_text()))

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self.path_faults["POST /fapi/v1/order"] = self.order_faults

    # ------------------------------------------------------------------ HTTP routes
    def unsigned(self, method: str, path: str, params: dict[str, str], raw_path: str) -> tuple | None:
        if method != "GET":
            return None
        if path == "/fapi/v1/exchangeInfo":
            return 200, self.exchange_info
        if path in ("/fapi/v1/time", "/fapi/v1/ping"):
            return 200, {"serverTime": int(time.time() * 1000)} if path.endswith("time") else {}
        if path == "/fapi/v1/premiumIndex":
            rows = [self._premium(s) for s in self.prices if params.get("symbol") in (None, s)]
            return 200, rows[0] if "symbol" in params and rows else rows
        return None

    def signed(self, method: str, path: str) -> bool:
        return (method == "GET" and path in READS) or (method, path) in WRITES

    def received(self, method: str, path: str, params: dict[str, str]) -> None:
        if method == "POST" and path in ("/fapi/v1/order", "/fapi/v1/algoOrder"):
            self.creates[params.get("newClientOrderId") or params.get("clientAlgoId") or ""] += 1

    def route(self, method: str, path: str, params: dict[str, str]) -> Reply:
        try:
            with self._lock:
                if method == "GET":
                    return 200, self._read(path, params)
                if path == "/fapi/v1/leverage":
                    return 200, self._set_leverage(params)
                if path == "/fapi/v1/marginType":
                    return 200, self._set_margin_type(params)
                if path == "/fapi/v1/algoOrder":
                    return 200, self._new_algo(params) if method == "POST" else self._cancel_algo(params)
                return 200, public(self._new_order(params) if method == "POST" else self._cancel(params))
        except Reject as refused:
            return refused.status, refused.body()

    # ------------------------------------------------------------------ account settings
    def _symbol(self, q: dict) -> str:
        symbol = _mandatory(q, "symbol")
        if symbol not in {s["symbol"] for s in self.exchange_info["symbols"]}:
            raise Reject(-1121, "Invalid symbol.")
        return symbol

    def _set_leverage(self, q: dict) -> dict:
        symbol, lev = self._symbol(q), int(_mandatory(q, "leverage"))
        if not 1 <= lev <= max_leverage(symbol):
            raise Reject(-4028, f"Leverage {lev} is not valid")
        self.leverage[symbol] = lev
        return {"leverage": lev, "maxNotionalValue": str(self._cap(symbol)), "symbol": symbol}

    def _set_margin_type(self, q: dict) -> dict:
        symbol, kind = self._symbol(q), _mandatory(q, "marginType")
        if kind not in ("ISOLATED", "CROSSED"):
            raise Reject(-4044, "The balance type is not correct.")
        if self.margin_type.get(symbol, "CROSSED") == kind:
            raise Reject(-4046, "No need to change margin type.")
        if self._position(symbol).amount != 0.0:
            raise Reject(-4048, "Margin type cannot be changed if there exists position.")
        if any(o["symbol"] == symbol and o["status"] in OPEN for o in self.book):
            raise Reject(-4047, "Margin type cannot be changed if there exists open orders.")
        self.margin_type[symbol] = kind
        return {"code": 200, "msg": "success"}

    # ------------------------------------------------------------------ orders
    def _new_order(self, q: dict, *, algo: dict | None = None) -> dict:
        cid = q.get("newClientOrderId") or f"auto-{len(self.book) + 1}"
        if algo is None and any(o["clientOrderId"] == cid and o["status"] in OPEN for o in self.book):
            raise Reject(-4116, "ClientOrderId is duplicated.")
        symbol, side, kind = self._symbol(q), _mandatory(q, "side"), _mandatory(q, "type")
        if kind in ALGO:
            raise Reject(
                -4120, "Order type not supported for this endpoint. Please use the Algo service endpoints instead."
            )
        if kind not in ("MARKET", "LIMIT"):
            raise Reject(-1116, "Invalid orderType.")
        if symbol not in self.prices:
            raise Reject(-1121, f"Invalid symbol: this loopback has no price for {symbol}; set prices[{symbol!r}]")
        info, last = next(s for s in self.exchange_info["symbols"] if s["symbol"] == symbol), dec(self.prices[symbol])
        f, reduce_only = filters(info), str(q.get("reduceOnly", "false")).lower() == "true"
        qty = dec(_mandatory(q, "quantity"), name="quantity")
        check_quantity(f, qty, market=kind == "MARKET", futures=True)
        price = dec(_mandatory(q, "price"), name="price") if kind == "LIMIT" else None
        tif = _mandatory(q, "timeInForce") if kind == "LIMIT" else "GTC"
        if price is not None:
            check_price(f, price, futures=True)
        if not reduce_only:
            check_notional(f, qty * (price or last), market=kind == "MARKET", futures=True)
        pos = self._position(symbol)
        shrinks = (pos.amount > 0 and side == "SELL") or (pos.amount < 0 and side == "BUY")
        if reduce_only and not shrinks:
            raise Reject(-2022, "ReduceOnly Order is rejected.")
        if tif == "GTX" and marketable(side, price, last):
            raise Reject(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be rejected. "
                "The order will not be recorded in the order history",
            )
        opening = float(qty) - (abs(pos.amount) if shrinks else 0.0)
        if not reduce_only and opening > 0 and opening * float(price or last) / self._lev(symbol) > self.available():
            raise Reject(-2019, "Margin is insufficient.")
        now = int(time.time() * 1000)
        order = {
            "orderId": 8_000_000 + len(self.book),
            "symbol": symbol,
            "status": "NEW",
            "clientOrderId": cid,
            "price": fmt(price or 0, 2),
            "avgPrice": "0.00",
            "origQty": fmt(qty, 3),
            "executedQty": "0.000",
            "cumQuote": "0.00000",
            "timeInForce": tif,
            "type": kind,
            "reduceOnly": reduce_only,
            "closePosition": False,
            "side": side,
            "positionSide": "BOTH",
            "stopPrice": "0.00",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": False,
            "origType": (algo or {}).get("orderType", kind),
            "priceMatch": "NONE",
            "selfTradePreventionMode": "NONE",
            "goodTillDate": 0,
            "time": now,
            "updateTime": now,
            "_trades": [],
            "_algo": algo,
        }
        self.book.append(order)
        self.orders[cid] = order
        if kind == "MARKET" or marketable(side, price, last):
            self._fill(order, float(last), maker=False)
        elif tif in ("IOC", "FOK"):
            order.update(status="EXPIRED", updateTime=now)
        return order

    def _fill(self, order: dict, price: float, *, maker: bool, qty: float | None = None) -> None:
        """Fill ``qty`` (all that is left) of ``order``; a reduce-only order never flips the
        position: what exceeds it expires."""
        symbol, side = order["symbol"], order["side"]
        pos = self._position(symbol)
        left = float(order["origQty"]) - float(order["executedQty"])
        qty = round(left if qty is None else min(qty, left), 3)
        shrinks = (pos.amount > 0 and side == "SELL") or (pos.amount < 0 and side == "BUY")
        if order["reduceOnly"]:
            qty = min(qty, abs(pos.amount)) if shrinks else 0.0
        now = int(time.time() * 1000)
        if qty > 0:
            fee = qty * price * (MAKER if maker else TAKER)
            realized = apply_fill(pos, side, qty, price, leverage=self._lev(symbol), isolated=self._isolated(symbol))
            pos.updated = now
            self.balances["USDT"] = self.balances.get("USDT", 0.0) + realized - fee
            trade_id = order["orderId"] * 10 + len(order["_trades"])
            order["_trades"].append(
                {"symbol": symbol, "id": trade_id, "orderId": order["orderId"], "side": side, "price": fmt(price, 2)}
                | {"qty": fmt(qty, 3), "realizedPnl": fmt(realized), "quoteQty": fmt(qty * price), "time": now}
                | {"commission": fmt(fee), "commissionAsset": "USDT", "positionSide": "BOTH", "buyer": side == "BUY"}
                | {"maker": maker, "marginAsset": "USDT"}
            )
            if realized:
                self._income(symbol, "REALIZED_PNL", realized, now, trade_id)
            self._income(symbol, "COMMISSION", -fee, now, trade_id)
            executed = float(order["executedQty"]) + qty
            cum = float(order["cumQuote"]) + qty * price
            order.update(executedQty=fmt(executed, 3), cumQuote=fmt(cum, 5), avgPrice=fmt(cum / executed, 5))
        executed = float(order["executedQty"])
        if executed >= float(order["origQty"]) - 1e-12:
            order["status"] = "FILLED"
        elif order["reduceOnly"] and pos.amount == 0.0:
            order["status"] = "EXPIRED"  # nothing left to reduce
        elif executed > 0:
            order["status"] = "PARTIALLY_FILLED"
        order["updateTime"] = now
        if order["_algo"] is not None and order["status"] not in OPEN:
            order["_algo"].update(algoStatus="FINISHED", actualPrice=order["avgPrice"], updateTime=now)

    def _income(self, symbol: str, kind: str, amount: float, ts: int, trade_id: int | str = "") -> None:
        self.income.append(
            {"symbol": symbol, "incomeType": kind, "income": fmt(amount), "asset": "USDT", "info": kind, "time": ts}
            | {"tranId": 9_000_000 + len(self.income), "tradeId": str(trade_id)}
        )

    def _find(self, rows: list[dict], q: dict, *, cid_key: str, id_key: str, open_only: bool) -> dict | None:
        cid, oid = q.get("origClientOrderId") or q.get("clientAlgoId"), q.get("orderId") or q.get("algoId")
        if not cid and not oid:
            raise Reject(-1102, f"Param '{cid_key}' or '{id_key}' must be sent, but both were empty/null!")
        status = "algoStatus" if id_key == "algoId" else "status"
        match = [
            o
            for o in rows
            if o["symbol"] == q.get("symbol")
            and (o[cid_key] == cid or str(o[id_key]) == oid)
            and (not open_only or o[status] in OPEN)
        ]
        return match[-1] if match else None

    def _cancel(self, q: dict) -> dict:
        order = self._find(self.book, q, cid_key="clientOrderId", id_key="orderId", open_only=True)
        if order is None:
            raise Reject(-2011, "Unknown order sent.")
        order.update(status="CANCELED", updateTime=int(time.time() * 1000))
        return order

    def _new_algo(self, q: dict) -> dict:
        symbol, side, kind = self._symbol(q), _mandatory(q, "side"), _mandatory(q, "type")
        if q.get("algoType") != "CONDITIONAL" or kind not in ALGO:
            raise Reject(-1116, "Invalid orderType.")
        trigger, last = dec(_mandatory(q, "triggerPrice"), name="triggerPrice"), dec(self.prices[symbol])
        info = next(s for s in self.exchange_info["symbols"] if s["symbol"] == symbol)
        check_price(filters(info), trigger, futures=True)
        check_quantity(filters(info), dec(_mandatory(q, "quantity")), market=kind.endswith("MARKET"), futures=True)
        if triggered(ALGO[kind], side, trigger, last):
            raise Reject(-2021, "Order would immediately trigger.")
        cid = q.get("clientAlgoId") or f"algo-{len(self.algo_book) + 1}"
        now = int(time.time() * 1000)
        algo = {
            "algoId": 3_000 + len(self.algo_book),
            "clientAlgoId": cid,
            "algoType": "CONDITIONAL",
            "orderType": kind,
            "symbol": symbol,
            "side": side,
            "positionSide": "BOTH",
            "timeInForce": q.get("timeInForce", "GTC"),
            "quantity": fmt(dec(q["quantity"]), 3),
            "algoStatus": "NEW",
            "actualOrderId": "",
            "actualPrice": "",
            "triggerPrice": fmt(trigger, 2),
            "price": fmt(dec(q.get("price", "0")), 2),
            "icebergQuantity": None,
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": "CONTRACT_PRICE",
            "priceMatch": "NONE",
            "closePosition": False,
            "priceProtect": False,
            "reduceOnly": str(q.get("reduceOnly", "false")).lower() == "true",
            "createTime": now,
            "updateTime": now,
            "triggerTime": 0,
            "goodTillDate": 0,
        }
        self.algo_book.append(algo)
        return algo

    def _cancel_algo(self, q: dict) -> dict:
        algo = self._find(self.algo_book, q, cid_key="clientAlgoId", id_key="algoId", open_only=False)
        if algo is None or algo["algoStatus"] not in ("NEW",):
            raise Reject(-2011, "Unknown order sent.")
        algo.update(algoStatus="CANCELED", updateTime=int(time.time() * 1000))
        return {"algoId": algo["algoId"], "clientAlgoId": algo["clientAlgoId"], "code": "200", "msg": "success"}

    # ------------------------------------------------------------------ control hooks
    def trade(self, symbol: str, price: float, qty: float | None = None) -> list[str]:
        """The market trades at ``price``: algo orders whose trigger it meets fire (their actual
        order takes at ``price``, or rests when a limit is not marketable), then resting limits
        it trades through fill at their own price (``qty`` of liquidity; None: unlimited)."""
        with self._lock:
            self.prices[symbol] = price
            p, traded = dec(price), []
            for algo in [a for a in self.algo_book if a["symbol"] == symbol and a["algoStatus"] == "NEW"]:
                if triggered(ALGO[algo["orderType"]], algo["side"], dec(algo["triggerPrice"]), p):
                    self._fire(algo)
                    traded.append(algo["clientAlgoId"])
            left = None if qty is None else qty
            for order in [o for o in self.book if o["symbol"] == symbol and o["status"] in OPEN]:
                if order["type"] == "LIMIT" and marketable(order["side"], dec(order["price"]), p) and left != 0:
                    before = float(order["executedQty"])
                    self._fill(order, float(order["price"]), maker=True, qty=left)
                    left = None if left is None else max(0.0, left - (float(order["executedQty"]) - before))
                    traded.append(order["clientOrderId"])
            return traded

    def _fire(self, algo: dict) -> None:
        now = int(time.time() * 1000)
        algo.update(algoStatus="TRIGGERED", triggerTime=now, updateTime=now)
        limit = not algo["orderType"].endswith("MARKET")
        q = {"symbol": algo["symbol"], "side": algo["side"], "type": "LIMIT" if limit else "MARKET"}
        q |= {"quantity": algo["quantity"], "newClientOrderId": algo["clientAlgoId"]}
        q |= {"reduceOnly": str(algo["reduceOnly"]).lower()}
        if limit:
            q |= {"price": algo["price"], "timeInForce": algo["timeInForce"]}
        try:
            order = self._new_order(q, algo=algo)
        except Reject as refused:  # e.g. a reduce-only stop with no position left
            algo.update(algoStatus="EXPIRED", updateTime=now, _reason=refused.msg)
            return
        algo["actualOrderId"] = str(order["orderId"])
        if order["status"] not in OPEN:
            algo.update(algoStatus="FINISHED", actualPrice=order["avgPrice"])

    def manual_order(self, symbol: str, side: str, qty: float, *, reduce_only: bool = True) -> dict:
        """A market order from outside the session (the website, another program): it takes at
        the last price, under a client id no session made (``web_N``)."""
        with self._lock:
            q = {"symbol": symbol, "side": side, "type": "MARKET", "quantity": fmt(qty, 3)}
            q |= {"reduceOnly": str(reduce_only).lower(), "newClientOrderId": f"web_{len(self.book) + 1}"}
            return public(self._new_order(q))

    def pay_funding(self, symbol: str, rate: float, *, ts: int | None = None) -> list[dict]:
        """A funding settlement at the mark price: ``-amount x mark x rate`` to each open position
        on ``symbol`` (isolated: into its wallet); returns the FUNDING_FEE income rows."""
        with self._lock:
            ts = ts or int(time.time() * 1000)
            self.funding_rates[symbol] = rate
            pos, rows = self._position(symbol), []
            if pos.amount != 0.0:
                amount = -pos.amount * self._mark(symbol) * rate
                self.balances["USDT"] = self.balances.get("USDT", 0.0) + amount
                if self._isolated(symbol):
                    pos.isolated_wallet += amount
                self._income(symbol, "FUNDING_FEE", amount, ts)
                rows.append(self.income[-1])
            return rows
