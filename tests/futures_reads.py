"""The read side of the USDⓈ-M loopback (``tests/futures_exchange_server.py``): positions with
their liquidation prices, the account, income, premium index, leverage brackets and symbol
settings, in Binance's field names; and the margin the account has available for a new order
(``tests/futures_account.py`` states the rules)."""

from __future__ import annotations

import time

from binance_rules import fmt
from futures_account import BRACKETS, DEFAULT_LEVERAGE, Position, bracket, liquidation_price, unrealized
from loopback_http import Reject

OPEN = ("NEW", "PARTIALLY_FILLED")


def public(order: dict) -> dict:
    return {k: v for k, v in order.items() if not k.startswith("_")}


class UsdmAccountReads:
    """Mixed into ``BinanceUsdmLoopback``: reads its fields, never writes them."""

    prices: dict[str, float]
    marks: dict[str, float]
    balances: dict[str, float]
    leverage: dict[str, int]
    margin_type: dict[str, str]
    positions: dict[str, Position]
    funding_rates: dict[str, float]
    income: list[dict]
    book: list[dict]
    algo_book: list[dict]

    def _find(self, rows: list[dict], q: dict, *, cid_key: str, id_key: str, open_only: bool) -> dict | None:
        raise NotImplementedError

    def _position(self, symbol: str) -> Position:
        return self.positions.setdefault(symbol, Position())

    def _mark(self, symbol: str) -> float:
        return self.marks.get(symbol, self.prices.get(symbol, 0.0))

    def _lev(self, symbol: str) -> int:
        return self.leverage.get(symbol, DEFAULT_LEVERAGE)

    def _isolated(self, symbol: str) -> bool:
        return self.margin_type.get(symbol, "CROSSED") == "ISOLATED"

    def available(self, asset: str = "USDT") -> float:
        """What a new opening order may use as initial margin (``futures_account`` rules)."""
        free = self.balances.get(asset, 0.0)
        for symbol, pos in self.positions.items():
            if self._isolated(symbol):
                free -= pos.isolated_wallet
            else:
                free += unrealized(pos, self._mark(symbol)) - abs(pos.amount) * self._mark(symbol) / self._lev(symbol)
        for o in self.book:
            if o["status"] in OPEN and o["type"] == "LIMIT" and o["reduceOnly"] is False:
                left = float(o["origQty"]) - float(o["executedQty"])
                free -= left * float(o["price"]) / self._lev(o["symbol"])
        return free

    def _cap(self, symbol: str) -> int:
        """The largest notional the symbol's leverage allows (its brackets' cap)."""
        return max(r[1] for r in BRACKETS[symbol] if r[4] >= self._lev(symbol))

    # ------------------------------------------------------------------ reads
    def _premium(self, symbol: str) -> dict:
        mark, now = self._mark(symbol), int(time.time() * 1000)
        return {
            "symbol": symbol,
            "markPrice": fmt(mark),
            "indexPrice": fmt(mark),
            "estimatedSettlePrice": fmt(mark),
            "lastFundingRate": fmt(self.funding_rates.get(symbol, 0.0001)),
            "interestRate": "0.00010000",
            "nextFundingTime": now - now % 28_800_000 + 28_800_000,
            "time": now,
        }

    def position_row(self, symbol: str) -> dict:
        """``/fapi/v3/positionRisk``'s row for ``symbol`` (v2 adds leverage and margin type)."""
        pos, mark, iso = self._position(symbol), self._mark(symbol), self._isolated(symbol)
        others = [(s, p, self._mark(s)) for s, p in self.positions.items() if s != symbol and not self._isolated(s)]
        cross_wallet = self.balances.get("USDT", 0.0) - sum(p.isolated_wallet for p in self.positions.values())
        liq = liquidation_price(symbol, pos, mark=mark, isolated=iso, cross_wallet=cross_wallet, others=others)
        notional, upnl = pos.amount * mark, unrealized(pos, mark)
        mmr, cum = bracket(symbol, abs(notional))
        return {
            "symbol": symbol,
            "positionSide": "BOTH",
            "positionAmt": fmt(pos.amount, 3),
            "entryPrice": fmt(pos.entry),
            "breakEvenPrice": fmt(pos.entry),
            "markPrice": fmt(mark),
            "unRealizedProfit": fmt(upnl),
            "liquidationPrice": fmt(liq),
            "isolatedMargin": fmt(pos.isolated_wallet + upnl if iso else 0.0),
            "notional": fmt(notional),
            "marginAsset": "USDT",
            "isolatedWallet": fmt(pos.isolated_wallet if iso else 0.0),
            "initialMargin": fmt(abs(notional) / self._lev(symbol)),
            "maintMargin": fmt(abs(notional) * mmr - cum),
            "positionInitialMargin": fmt(abs(notional) / self._lev(symbol)),
            "openOrderInitialMargin": "0",
            "adl": 1,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": pos.updated,
        }

    def _read(self, path: str, q: dict) -> object:
        symbol = q.get("symbol")
        start, end = int(q.get("startTime", 0)), int(q.get("endTime", 2**62))
        if path in ("/fapi/v1/order", "/fapi/v1/algoOrder"):
            algo = path.endswith("algoOrder")
            rows, cid_key, id_key = (
                (self.algo_book, "clientAlgoId", "algoId") if algo else (self.book, "clientOrderId", "orderId")
            )
            found = self._find(rows, q, cid_key=cid_key, id_key=id_key, open_only=False)
            if found is None:
                raise Reject(-2013, "Order does not exist.")
            return public(found)
        if path in ("/fapi/v1/openOrders", "/fapi/v1/allOrders"):
            mine = [o for o in self.book if symbol in (None, o["symbol"]) and start <= o["time"] <= end]
            return [public(o) for o in mine if path.endswith("allOrders") or o["status"] in OPEN]
        if path in ("/fapi/v1/openAlgoOrders", "/fapi/v1/allAlgoOrders"):
            mine = [a for a in self.algo_book if symbol in (None, a["symbol"]) and start <= a["createTime"] <= end]
            return [public(a) for a in mine if path.endswith("allAlgoOrders") or a["algoStatus"] == "NEW"]
        if path == "/fapi/v1/userTrades":
            trades = [t for o in self.book if o["symbol"] == symbol for t in o["_trades"]]
            trades = [t for t in trades if str(t["orderId"]) == q.get("orderId", str(t["orderId"]))]
            trades = [t for t in trades if start <= t["time"] <= end and t["id"] >= int(q.get("fromId", 0))]
            return sorted(trades, key=lambda t: t["id"])[: min(int(q.get("limit", 500)), 1000)]
        if path == "/fapi/v1/income":
            rows = [
                r
                for r in self.income
                if symbol in (None, r["symbol"]) and q.get("incomeType") in (None, r["incomeType"])
            ]
            rows = [r for r in rows if start <= r["time"] <= end]
            return rows[: min(int(q.get("limit", 100)), 1000)]
        if path == "/fapi/v1/leverageBracket":
            return [{"symbol": s, "brackets": self._brackets(s)} for s in self.prices if symbol in (None, s)]
        if path == "/fapi/v1/symbolConfig":
            return [
                {"symbol": s, "marginType": self.margin_type.get(s, "CROSSED"), "isAutoAddMargin": False}
                | {"leverage": self._lev(s), "maxNotionalValue": str(self._cap(s))}
                for s in self.prices
                if symbol in (None, s)
            ]
        if path in ("/fapi/v2/positionRisk", "/fapi/v3/positionRisk"):
            v2 = path.startswith("/fapi/v2")
            held = [s for s, p in self.positions.items() if p.amount != 0.0 and symbol in (None, s)]
            return [self.position_row(s) | (self._v2_fields(s) if v2 else {}) for s in held]
        return self._account(v2_balance=path == "/fapi/v2/balance")

    def _v2_fields(self, symbol: str) -> dict:
        return {"leverage": str(self._lev(symbol)), "marginType": "isolated" if self._isolated(symbol) else "cross"}

    def _brackets(self, symbol: str) -> list[dict]:
        rows = BRACKETS[symbol]
        return [
            {"bracket": i + 1, "initialLeverage": r[4], "notionalCap": r[1], "notionalFloor": r[0]}
            | {"maintMarginRatio": r[2], "cum": r[3]}
            for i, r in enumerate(rows)
        ]

    def _account(self, *, v2_balance: bool) -> object:
        now, wallet = int(time.time() * 1000), self.balances.get("USDT", 0.0)
        upnl = sum(unrealized(p, self._mark(s)) for s, p in self.positions.items())
        initial = sum(abs(p.amount) * self._mark(s) / self._lev(s) for s, p in self.positions.items())
        available = self.available()
        if v2_balance:
            return [
                {"accountAlias": "loopback", "asset": "USDT", "balance": fmt(wallet), "crossWalletBalance": fmt(wallet)}
                | {"crossUnPnl": fmt(upnl), "availableBalance": fmt(available), "maxWithdrawAmount": fmt(available)}
                | {"marginAvailable": True, "updateTime": now}
            ]
        asset = {"asset": "USDT", "walletBalance": fmt(wallet), "unrealizedProfit": fmt(upnl)}
        asset |= {"marginBalance": fmt(wallet + upnl), "maintMargin": "0", "initialMargin": fmt(initial)}
        asset |= {
            "positionInitialMargin": fmt(initial),
            "openOrderInitialMargin": "0",
            "crossWalletBalance": fmt(wallet),
        }
        asset |= {"crossUnPnl": fmt(upnl), "availableBalance": fmt(available), "maxWithdrawAmount": fmt(available)}
        return {
            "totalInitialMargin": fmt(initial),
            "totalMaintMargin": "0",
            "totalWalletBalance": fmt(wallet),
            "totalUnrealizedProfit": fmt(upnl),
            "totalMarginBalance": fmt(wallet + upnl),
            "totalPositionInitialMargin": fmt(initial),
            "totalOpenOrderInitialMargin": "0",
            "totalCrossWalletBalance": fmt(wallet),
            "totalCrossUnPnl": fmt(upnl),
            "availableBalance": fmt(available),
            "maxWithdrawAmount": fmt(available),
            "assets": [asset | {"updateTime": now}],
            "positions": [],
        }
