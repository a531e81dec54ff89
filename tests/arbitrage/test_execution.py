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
    MarketLimits,
    Opportunity,
    PaperExecutionConfig,
    assets,
    balances,
    pair_result,
    plan_pair,
    session_quote,
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
        (FUNDED, 20.0, 0.19980019, "max_notional"),  # 20 USDT at 100 with its 0.1% fee, to the 1e-8 step
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


def test_max_notional_is_what_the_buy_leg_spends_its_fee_included() -> None:
    config = PaperExecutionConfig(max_notional=20.0, inventory=FUNDED)
    plan = plan_pair(opening(), config=config, taker_fees=FEES, held=FUNDED)
    assert plan.limited_by == "max_notional" and plan.size * 100 * (1 + 0.001) <= 20.0
    assert 20.0 - plan.size * 100 * 1.001 < 1e-8 * 100 * 1.001  # within one amount step of it


def fill(venue: str, side: OrderSide, quantity: float, price: float) -> LegFill:
    return LegFill(venue=venue, symbol="BTC/USDT", side=side, quantity=quantity, price=price,
                   fee=quantity * price * FEES[venue])  # fmt: skip


def test_after_a_cash_limited_pair_the_next_opening_sends_no_dust_and_no_balance_goes_negative() -> None:
    inventory = {"a": {"USDT": 30.0}, "b": {"BTC": 1.0}}
    config = PaperExecutionConfig(max_notional=1_000.0, inventory=inventory)
    fills: list[LegFill] = []
    for ask, bid in [(100.0, 101.0), (99.7, 101.3), (100.3, 101.9), (98.1, 100.2), (97.3, 99.0)]:
        o = opening(ask=ask, bid=bid, ask_size=5.0, bid_size=5.0)
        held = balances(inventory, fills)
        plan = plan_pair(o, config=config, taker_fees=FEES, held=held)
        if not plan.skipped:
            assert plan.size >= 1e-8 and plan.size == round(plan.size, 8)  # whole amount steps
            fills += [fill("a", OrderSide.BUY, plan.size, ask), fill("b", OrderSide.SELL, plan.size, bid)]
        assert all(x >= 0 for venue in balances(inventory, fills).values() for x in venue.values())
    assert len(fills) == 2  # the first pair spent the cash; every later opening was skipped, never 5e-18 BTC
    again = plan_pair(opening(ask=99.0, bid=101.0, ask_size=5.0, bid_size=5.0), config=config, taker_fees=FEES,
                      held=balances(inventory, fills))  # fmt: skip
    assert again.skipped and again.limited_by.startswith("dust")


def test_the_size_is_rounded_down_to_both_venues_steps_and_skipped_below_their_minimums() -> None:
    config = PaperExecutionConfig(max_notional=1_000.0, inventory=FUNDED)
    limits = {"a": MarketLimits(amount_step=1e-5), "b": MarketLimits(amount_step=1e-3, min_amount=0.01)}
    plan = plan_pair(opening(bid_size=0.123456), config=config, taker_fees=FEES, held=FUNDED, limits=limits)
    assert plan.size == 0.123 and plan.limited_by == "book"  # b's coarser step
    thin = plan_pair(opening(bid_size=0.0099), config=config, taker_fees=FEES, held=FUNDED, limits=limits)
    assert thin.skipped and thin.limited_by == "min amount on b"
    costly = {"a": MarketLimits(min_cost=60.0)}
    plan = plan_pair(opening(), config=config, taker_fees=FEES, held=FUNDED, limits=costly)
    assert plan.skipped and plan.limited_by == "min cost on a"  # 0.5 at 100 is 50 < 60
    with pytest.raises(ConfigError, match="amount_step=0"):
        MarketLimits(amount_step=0)


def test_unequal_legs_realise_only_the_matched_quantity_and_report_the_rest_unhedged() -> None:
    o = opening()
    result = pair_result(o, [fill("a", OrderSide.BUY, 0.5, 100.0), fill("b", OrderSide.SELL, 0.2, 101.0)])
    matched = 0.2 * 101 * (1 - 0.002) - 0.2 * 100 * (1 + 0.001)
    assert result.matched == 0.2 and result.unhedged == pytest.approx(0.3)
    assert result.realised_net_profit == pytest.approx(matched)  # not 20.2 - 50 - fees: the 0.3 BTC is held
    assert result.realised_net_bps == pytest.approx(matched / 20.0 * 1e4)
    assert result.predicted_net_profit == pytest.approx(o.net_bps / 1e4 * 0.2 * 100)
    lone = pair_result(o, [fill("b", OrderSide.SELL, 0.5, 101.0)])  # the buy leg filled nothing
    assert lone.realised_net_bps is None and lone.realised_net_profit == 0.0 and lone.unhedged == -0.5
    assert "NaN" not in str(lone.as_dict()) and "nan" not in str(lone.as_dict())


def test_a_session_keeps_one_quote_asset_and_holds_some() -> None:
    assert session_quote({"a": {"USDT": 10.0, "BTC": 1.0}, "b": {"USDT": 5.0}}, ["BTC/USDT"]) == ("USDT", 15.0)
    with pytest.raises(ConfigError, match=r"init_cash=0.*holds no USDT.*--inventory VENUE=USDT:10000"):
        session_quote({"a": {"BTC": 1.0}, "b": {"BTC": 1.0}}, ["BTC/USDT"])
    with pytest.raises(ConfigError, match=r"quote assets \['USDC', 'USDT'\].*--symbol of one quote asset"):
        session_quote(FUNDED, ["BTC/USDT", "ETH/USDC"])
