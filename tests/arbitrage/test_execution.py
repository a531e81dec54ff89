"""Paper execution's option, inventory, sizing and result (``tradeloop.arbitrage.execution``),
on crafted opportunities: every figure recomputed here from the quotes and fees."""

from __future__ import annotations

import math

import pytest

from tests.arbitrage.test_scanner import top
from tradeloop.arbitrage import (
    ArbitrageConfig,
    ArbitrageScanner,
    LegFill,
    Opportunity,
    PaperExecutionConfig,
    assets,
    balances,
    pair_result,
    plan_pair,
)
from tradeloop.errors import ConfigError
from tradeloop.trading import OrderSide

FEES = {"a": 0.001, "b": 0.002}
FUNDED = {"a": {"USDT": 10_000.0}, "b": {"BTC": 1.0}}


def opening(*, ask=100.0, bid=101.0, ask_size=0.8, bid_size=0.5) -> Opportunity:
    scanner = ArbitrageScanner(ArbitrageConfig(taker_fees=FEES))
    scanner.update(top("a", 0, bid=ask - 1, ask=ask, ask_size=ask_size))
    (event,) = scanner.update(top("b", 0, bid=bid, ask=bid + 1, bid_size=bid_size))
    return event.opportunity


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"max_notional": 0}, "max_notional=0: give a finite number > 0"),
        ({"max_notional": math.inf}, "max_notional=inf"),
        ({"max_notional": True}, "max_notional=True"),
        ({"inventory": {}}, "inventory={}: pre-fund the venues"),
        ({"inventory": {"a": {"BTC": -1}}}, "inventory['a']['BTC']=-1: give the amount of BTC held on a"),
        ({"inventory": {"a": {"BTC": math.nan}}}, "inventory['a']['BTC']=nan"),
        ({"inventory": {"a": 5}}, "inventory['a']=5: give asset -> amount"),
        ({"min_notional": -1}, "min_notional=-1: give a quote amount from 0 up to max_notional"),
        ({"min_notional": 500}, "min_notional=500"),
        ({"session": ""}, "session='': give the paper session a name"),
    ],
)
def test_the_option_refuses_bad_values_naming_them(options: dict, said: str) -> None:
    fields = {"max_notional": 100.0, "inventory": FUNDED, **options}
    with pytest.raises(ConfigError) as err:
        PaperExecutionConfig(**fields)
    assert said in str(err.value)


def test_the_option_is_frozen_and_keyword_only() -> None:
    config = PaperExecutionConfig(max_notional=100, inventory={"a": {"USDT": 5}})
    with pytest.raises(AttributeError):
        config.max_notional = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.inventory["a"]["USDT"] = 1.0  # type: ignore[index]
    with pytest.raises(TypeError):
        PaperExecutionConfig(100.0, FUNDED)  # type: ignore[misc]
    assert config.as_dict() == {
        "max_notional": 100.0,
        "min_notional": 0.0,
        "inventory": {"a": {"USDT": 5.0}},
        "session": "arbitrage-paper",
    }


def test_spot_symbols_only() -> None:
    assert assets("ETH/BTC") == ("ETH", "BTC")
    with pytest.raises(ConfigError, match="spot markets"):
        assets("BTC/USDT:USDT")


def test_balances_follow_the_fills_from_the_inventory() -> None:
    fills = [
        LegFill(venue="a", symbol="BTC/USDT", side=OrderSide.BUY, quantity=0.3, price=100.0, fee=0.03),
        LegFill(venue="b", symbol="BTC/USDT", side=OrderSide.SELL, quantity=0.3, price=101.0, fee=0.0606),
        LegFill(venue="b", symbol="ETH/BTC", side=OrderSide.BUY, quantity=2.0, price=0.05, fee=0.0001),
    ]
    held = balances(FUNDED, fills)
    assert held["a"] == {"USDT": pytest.approx(10_000 - 30 - 0.03), "BTC": pytest.approx(0.3)}
    assert held["b"]["USDT"] == pytest.approx(30.3 - 0.0606)
    assert held["b"]["BTC"] == pytest.approx(1.0 - 0.3 - 0.1 - 0.0001)  # sold 0.3, paid 0.1 and the fee for ETH
    assert held["b"]["ETH"] == pytest.approx(2.0)
    assert FUNDED == {"a": {"USDT": 10_000.0}, "b": {"BTC": 1.0}}  # the inventory itself is left alone


@pytest.mark.parametrize(
    ("held", "max_notional", "size", "limited_by"),
    [
        (FUNDED, 1_000.0, 0.5, "book"),  # b bids for 0.5
        (FUNDED, 20.0, 0.2, "max_notional"),  # 20 USDT at 100
        ({"a": {"USDT": 10_000.0}, "b": {"BTC": 0.1}}, 1_000.0, 0.1, "BTC held on b"),
        ({"a": {"USDT": 10.01}, "b": {"BTC": 1.0}}, 1_000.0, 10.01 / (100 * 1.001), "USDT held on a"),
        ({"a": {"USDT": 10_000.0}}, 1_000.0, 0.0, "BTC held on b"),  # b holds no BTC: skipped
    ],
)
def test_the_pair_is_sized_by_the_book_the_cap_and_the_inventory(held, max_notional, size, limited_by) -> None:
    config = PaperExecutionConfig(max_notional=max_notional, inventory=FUNDED)
    plan = plan_pair(opening(), config=config, taker_fees=FEES, held=held)
    assert plan.size == pytest.approx(size) and plan.limited_by == limited_by
    assert plan.skipped == (size == 0.0)


def test_a_pair_worth_no_more_than_min_notional_is_skipped() -> None:
    config = PaperExecutionConfig(max_notional=1_000.0, inventory=FUNDED, min_notional=50.0)
    assert plan_pair(opening(bid_size=0.5), config=config, taker_fees=FEES, held=FUNDED).skipped  # 50 at 100
    assert not plan_pair(opening(bid_size=0.6), config=config, taker_fees=FEES, held=FUNDED).skipped


def test_the_result_is_the_spread_less_both_fees_against_the_prediction() -> None:
    o = opening()
    buy = LegFill(venue="a", symbol="BTC/USDT", side=OrderSide.BUY, quantity=0.5, price=100.0, fee=0.5 * 100 * 0.001)
    sell = LegFill(venue="b", symbol="BTC/USDT", side=OrderSide.SELL, quantity=0.5, price=101.0, fee=0.5 * 101 * 0.002)
    result = pair_result(o, [buy, sell])
    expected = 0.5 * 101 * (1 - 0.002) - 0.5 * 100 * (1 + 0.001)
    assert result.realised_net_profit == pytest.approx(expected)
    assert result.realised_net_bps == pytest.approx(expected / 50 * 1e4)
    assert result.predicted_net_bps == o.net_bps and result.predicted_net_profit == pytest.approx(expected)
    worse = pair_result(o, [buy, LegFill(**{**_fields(sell), "price": 100.9})])  # a sell filled below its quote
    assert worse.realised_net_bps < worse.predicted_net_bps
    assert worse.realised_net_profit == pytest.approx(expected - 0.5 * 0.1)  # the same fee given


def _fields(fill: LegFill) -> dict:
    return {k: getattr(fill, k) for k in ("venue", "symbol", "side", "quantity", "price", "fee")}
