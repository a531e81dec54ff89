"""Small builders shared by the risk tests."""

from __future__ import annotations

from tradeloop.risk import PortfolioSnapshot, RiskConfig, RiskState
from tradeloop.trading import InstrumentId, OrderIntent, OrderIntentKind, OrderSide, OrderType

BTC = InstrumentId("binance", "BTC/USDT")
ETH = InstrumentId("binance", "ETH/USDT")
SOL = InstrumentId("binance", "SOL/USDT")
H = 3_600_000
DAY = 86_400_000

#: every limit off: a test turns on only the rule it is about
OFF = {"max_orders": None, "price_band": None, "daily_loss_limit": None, "max_drawdown": None}


def state(**limits) -> RiskState:
    return RiskState(RiskConfig(**{**OFF, **limits}))


def snap(equity: float = 10_000.0, cash: float | None = None, positions=None, prices=None) -> PortfolioSnapshot:
    prices = {BTC: 100.0, ETH: 50.0} if prices is None else prices
    return PortfolioSnapshot(
        equity=equity, cash=equity if cash is None else cash, positions=positions or {}, prices=prices
    )


def buy(inst=BTC, *, qty=None, quote=None, ref=100.0, limit=None, kind=OrderIntentKind.ENTER_LONG) -> OrderIntent:
    return OrderIntent(
        instrument=inst,
        side=OrderSide.BUY,
        kind=kind,
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        quantity=qty,
        quote_amount=quote,
        price=limit,
        reference_price=ref,
    )


def sell(inst=BTC, *, qty=None, quote=None, ref=100.0, limit=None, kind=OrderIntentKind.EXIT_LONG) -> OrderIntent:
    return OrderIntent(
        instrument=inst,
        side=OrderSide.SELL,
        kind=kind,
        order_type=OrderType.LIMIT if limit is not None else OrderType.MARKET,
        quantity=qty,
        quote_amount=quote,
        price=limit,
        reference_price=ref,
    )
