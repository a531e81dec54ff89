"""MarketRules: rounding to the venue's grid, and the rules read from a real ccxt market."""

import json
from pathlib import Path

import ccxt
import pytest

from tradeloop.errors import ConfigError
from tradeloop.risk import DECIMAL_PLACES, TICK_SIZE, MarketRules, round_to_step

EXCHANGE_INFO = Path(__file__).parents[1] / "fixtures" / "exchange" / "binance" / "exchange_info.json"


def test_amounts_round_down_to_the_step() -> None:
    assert round_to_step(0.3, 0.1) == 0.3  # 0.3 / 0.1 = 2.9999999999999996 in floats: still 3 steps
    assert round_to_step(0.12345, 0.001) == 0.123
    assert round_to_step(0.0019999, 0.001) == 0.001  # never up
    assert round_to_step(7.0, 5.0) == 5.0
    assert round_to_step(0.00012, 1e-05) == 0.00012
    assert round_to_step(1.23, None) == 1.23 and round_to_step(1.23, 0.0) == 1.23
    assert repr(MarketRules(amount_step=0.1).amount(0.7)) == "0.7"  # prints as the venue wants


def test_prices_round_to_the_tick() -> None:
    rules = MarketRules(price_tick=0.01)
    assert rules.price(100.005, mode="down") == 100.0
    assert rules.price(100.001, mode="up") == 100.01
    assert rules.price(100.01, mode="up") == 100.01  # already on the grid: stays
    assert rules.price(100.006) == 100.01 and rules.price(100.004) == 100.0


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ConfigError, match="amount_step=-0.1"):
        MarketRules(amount_step=-0.1)


def test_from_a_ccxt_binance_market_in_tick_size_mode() -> None:
    info = json.loads(EXCHANGE_INFO.read_text())
    raw = next(s for s in info["symbols"] if s["symbol"] == "BTCUSDT")
    filters = {f["filterType"]: f for f in raw["filters"]}
    exchange = ccxt.binance()
    exchange.options["crossMarginPairsData"] = exchange.options["isolatedMarginPairsData"] = []
    market = exchange.parse_market(raw)
    assert exchange.precisionMode == TICK_SIZE
    rules = MarketRules.from_ccxt(market, precision_mode=exchange.precisionMode)
    assert rules == MarketRules(
        min_amount=float(filters["LOT_SIZE"]["minQty"]),
        min_notional=float(filters["MIN_NOTIONAL"]["minNotional"]),
        amount_step=float(filters["LOT_SIZE"]["stepSize"]),
        price_tick=float(filters["PRICE_FILTER"]["tickSize"]),
    )


def test_from_a_decimal_places_market_and_no_rules() -> None:
    market = {"symbol": "X/Y", "precision": {"amount": 3, "price": 2}, "limits": {"cost": {"min": 5}}}
    assert MarketRules.from_ccxt(market, precision_mode=DECIMAL_PLACES) == MarketRules(
        min_notional=5.0, amount_step=0.001, price_tick=0.01
    )
    assert MarketRules.from_ccxt({"precision": {}, "limits": {"amount": {"min": None}}}) == MarketRules()
    with pytest.raises(ConfigError, match="SIGNIFICANT_DIGITS|no fixed step"):
        MarketRules.from_ccxt(market, precision_mode=ccxt.SIGNIFICANT_DIGITS)


def test_precision_modes_are_ccxts() -> None:
    assert (TICK_SIZE, DECIMAL_PLACES) == (ccxt.TICK_SIZE, ccxt.DECIMAL_PLACES)
