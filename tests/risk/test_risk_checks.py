"""The pre-trade rules (tradeloop.risk.checks), one at a time: a deny just past each limit and
an approve at it, with the numbers worked out by hand in each test."""

import json
import math
from types import SimpleNamespace

import pytest

from tests.risk.helpers import BTC, ETH, SOL, buy, sell, snap, state
from tradeloop.risk import (
    KillSwitchTrip,
    MarketRules,
    RiskApproved,
    RiskDenied,
    RiskRule,
    check_batch,
    check_intent,
    flatten_intents,
)
from tradeloop.trading import OrderIntentKind, OrderSide

R = RiskRule
K = OrderIntentKind


def verdict(intent, snapshot=None, st=None, *, ts=0, market=None):
    return check_intent(intent, snapshot or snap(), state=st or state(), ts=ts, market=market)


def denied(result, rule: RiskRule) -> RiskDenied:
    assert isinstance(result, RiskDenied), result
    assert result.rule == rule, result
    return result


def test_invalid_amounts_and_prices() -> None:
    assert verdict(buy(qty=1.0)).approved
    for bad in (buy(qty=0.0), buy(qty=-1.0), buy(qty=math.nan), buy(quote=math.inf), buy(qty=1.0, ref=0.0)):
        denied(verdict(bad), R.INVALID)


def test_a_reduction_must_reduce() -> None:
    long1 = snap(positions={BTC: 1.0})
    assert verdict(sell(qty=1.0), long1).approved  # the whole position
    d = denied(verdict(sell(qty=1.01), long1), R.NOT_REDUCING)  # 0.01 would open a short
    assert (d.limit, d.value) == (1.0, 1.01)
    denied(verdict(sell(qty=0.5)), R.NOT_REDUCING)  # flat: nothing to reduce
    denied(verdict(buy(qty=0.5, kind=K.EXIT_LONG), long1), R.NOT_REDUCING)  # a buy grows a long
    # a quote amount is converted at the order's price: 100 quote / 100 = 1.0 of 1.0 held
    assert verdict(sell(quote=100.0), long1).approved
    denied(verdict(sell(quote=100.5), long1), R.NOT_REDUCING)


def test_kill_switch_denies_entries_not_exits() -> None:
    st = state()
    st.tripped = KillSwitchTrip(
        rule=R.MAX_DRAWDOWN, ts=0, equity=700.0, reference=1000.0, value=0.3, limit=0.3, message="test"
    )
    denied(verdict(buy(qty=1.0), st=st), R.KILL_SWITCH)
    assert verdict(sell(qty=1.0), snap(positions={BTC: 1.0}), st).approved


def test_throttle_counts_orders_in_the_window_of_bar_time() -> None:
    st = state(max_orders=3, throttle_window_ms=60_000)
    for t in (0, 30_000, 30_000):
        st.record_order(t)
    # (59_999 - 60_000, 59_999] holds all three: the fourth is one too many
    d = denied(verdict(buy(qty=1.0), st=st, ts=59_999), R.THROTTLE)
    assert (d.limit, d.value) == (3, 4)
    # (0, 60_000] no longer holds the order at 0: two, so one more is allowed
    assert verdict(buy(qty=1.0), st=st, ts=60_000).approved
    # exits are never throttled
    assert verdict(sell(qty=1.0), snap(positions={BTC: 1.0}), st, ts=59_999).approved


def test_throttle_counts_the_same_batch() -> None:
    st = state(max_orders=2)
    held = snap(positions={BTC: 1.0})
    results = check_batch(
        [buy(ETH, qty=1.0, ref=50.0), buy(SOL, qty=1.0, ref=20.0), sell(qty=1.0)], held, state=st, ts=0
    )
    # the exit is judged first and counts: ETH is the second order, SOL the third
    assert results[2].approved and results[0].approved
    denied(results[1], R.THROTTLE)
    assert st.orders_in_window(0) == 2  # the approved ones were recorded


def test_no_price() -> None:
    no_ref = buy(SOL, qty=1.0, ref=None)
    denied(verdict(no_ref), R.NO_PRICE)  # SOL has no last price either
    assert verdict(no_ref, snap(prices={SOL: 20.0})).approved  # valued at the last price


def test_price_band() -> None:
    st = state(price_band=0.10)
    # last 100: a limit at 110 is exactly 10% away (allowed), 110.01 is 10.01% away
    assert verdict(buy(qty=1.0, limit=110.0), st=st).approved
    d = denied(verdict(buy(qty=1.0, limit=110.01), st=st), R.PRICE_BAND)
    assert d.limit == 0.10 and d.value == pytest.approx(0.1001)
    assert verdict(buy(qty=1.0, ref=90.0), st=st).approved
    denied(verdict(buy(qty=1.0, ref=89.99), st=st), R.PRICE_BAND)
    # an exit far from the last trade (a stop on a gap) is not a fat finger
    assert verdict(sell(qty=1.0, limit=50.0), snap(positions={BTC: 1.0}), st).approved


def test_min_amount_after_rounding_down_to_the_step() -> None:
    market = MarketRules(min_amount=0.002, amount_step=0.001)
    ok = verdict(buy(qty=0.0029), market=market)
    assert isinstance(ok, RiskApproved) and ok.intent.quantity == 0.002  # rounded down, never up
    d = denied(verdict(buy(qty=0.0019), market=market), R.MIN_AMOUNT)  # rounds to 0.001 < 0.002
    assert (d.limit, d.value) == (0.002, 0.001)
    denied(verdict(buy(qty=0.0009), market=MarketRules(amount_step=0.001)), R.MIN_AMOUNT)  # rounds to 0
    # the venue refuses it whatever it is for: an exit too
    denied(verdict(sell(qty=0.0015), snap(positions={BTC: 0.0015}), market=market), R.MIN_AMOUNT)
    # check_market_rules=False sends it as it is
    assert verdict(buy(qty=0.0019), st=state(check_market_rules=False), market=market).intent.quantity == 0.0019


def test_min_notional() -> None:
    market = MarketRules(min_notional=10.0)
    assert verdict(buy(qty=0.1), market=market).approved  # 0.1 * 100 = 10.00
    d = denied(verdict(buy(qty=0.0999), market=market), R.MIN_NOTIONAL)  # 9.99
    assert d.value == pytest.approx(9.99)
    denied(verdict(buy(quote=9.99), market=market), R.MIN_NOTIONAL)
    assert verdict(sell(qty=0.05), snap(positions={BTC: 0.05}), market=market).approved  # 5.00: an exit passes


def test_max_order_notional() -> None:
    st = state(max_order_notional=1000.0)
    assert verdict(buy(quote=1000.0), st=st).approved
    assert verdict(buy(qty=10.0), st=st).approved  # 10 * 100
    d = denied(verdict(buy(quote=1000.01), st=st), R.MAX_ORDER_NOTIONAL)
    assert (d.limit, d.value) == (1000.0, 1000.01)
    denied(verdict(buy(qty=10.001), st=st), R.MAX_ORDER_NOTIONAL)  # 1000.10
    denied(verdict(buy(qty=5.0, limit=201.0), st=st), R.MAX_ORDER_NOTIONAL)  # valued at the limit: 1005


def test_max_position_notional_after_the_order() -> None:
    st = state(max_position_notional=2000.0)
    long15 = snap(positions={BTC: 15.0})  # 1500 held
    assert verdict(buy(qty=5.0), long15, st).approved  # 1500 + 500 = 2000
    d = denied(verdict(buy(qty=5.01), long15, st), R.MAX_POSITION_NOTIONAL)
    assert d.value == pytest.approx(2001.0)
    short15 = snap(positions={BTC: -15.0})
    assert verdict(sell(qty=5.0, kind=K.ENTER_SHORT), short15, st).approved  # |-1500 - 500| = 2000
    denied(verdict(sell(qty=5.01, kind=K.ENTER_SHORT), short15, st), R.MAX_POSITION_NOTIONAL)


def test_max_open_positions() -> None:
    both = snap(positions={BTC: 1.0, ETH: 1.0}, prices={BTC: 100.0, ETH: 50.0, SOL: 20.0})
    d = denied(verdict(buy(SOL, qty=1.0, ref=20.0), both, state(max_open_positions=2)), R.MAX_OPEN_POSITIONS)
    assert (d.limit, d.value) == (2, 3)
    assert verdict(buy(BTC, qty=1.0), both, state(max_open_positions=2)).approved  # adds, opens nothing
    assert verdict(buy(SOL, qty=1.0, ref=20.0), both, state(max_open_positions=3)).approved


def test_max_gross_exposure() -> None:
    st = state(max_gross_exposure=1.0)
    # equity 10_000; BTC +40 @ 100 = +4000, ETH -40 @ 50 = -2000: gross 6000
    book = snap(positions={BTC: 40.0, ETH: -40.0}, prices={BTC: 100.0, ETH: 50.0, SOL: 20.0})
    assert verdict(buy(SOL, quote=4000.0, ref=20.0), book, st).approved  # 10_000 / 10_000 = 1.0
    d = denied(verdict(buy(SOL, quote=4000.5, ref=20.0), book, st), R.MAX_GROSS_EXPOSURE)
    assert d.value == pytest.approx(10_000.5 / 10_000)
    # shorting more ETH adds to gross: 4000 + |-2000 - 4000| = 10_000
    assert verdict(sell(ETH, quote=4000.0, ref=50.0, kind=K.ENTER_SHORT), book, st).approved
    denied(verdict(sell(ETH, quote=4001.0, ref=50.0, kind=K.ENTER_SHORT), book, st), R.MAX_GROSS_EXPOSURE)
    # no equity: any entry is too much
    denied(verdict(buy(qty=0.01), snap(equity=0.0), st), R.MAX_GROSS_EXPOSURE)


def test_max_net_exposure() -> None:
    st = state(max_net_exposure=0.5)
    book = snap(positions={BTC: 40.0, ETH: -40.0}, prices={BTC: 100.0, ETH: 50.0, SOL: 20.0})  # net +2000
    assert verdict(buy(SOL, quote=3000.0, ref=20.0), book, st).approved  # 5000 / 10_000
    denied(verdict(buy(SOL, quote=3001.0, ref=20.0), book, st), R.MAX_NET_EXPOSURE)
    assert verdict(sell(SOL, quote=7000.0, ref=20.0, kind=K.ENTER_SHORT), book, st).approved  # |2000 - 7000|
    d = denied(verdict(sell(SOL, quote=7001.0, ref=20.0, kind=K.ENTER_SHORT), book, st), R.MAX_NET_EXPOSURE)
    assert d.value == pytest.approx(5001.0 / 10_000)


def test_the_first_failing_rule_is_the_verdict() -> None:
    st = state(price_band=0.01, max_order_notional=10.0, max_orders=1)
    # breaks the band (limit 150 vs last 100) and the order cap (1500): the band comes first
    denied(verdict(buy(qty=10.0, limit=150.0), st=st), R.PRICE_BAND)
    st.record_order(0)  # and now the throttle, which comes before the band
    denied(verdict(buy(qty=10.0, limit=150.0), st=st), R.THROTTLE)


def test_reductions_pass_when_entries_are_denied() -> None:
    tight = {"max_order_notional": 1.0, "max_position_notional": 1.0, "max_gross_exposure": 0.01}
    st = state(max_orders=1, price_band=0.001, max_net_exposure=0.01, max_open_positions=1, **tight)
    st.record_order(0)
    st.tripped = KillSwitchTrip(rule=R.DAILY_LOSS, ts=0, equity=1.0, reference=2.0, value=0.5, limit=0.1, message="x")
    book = snap(positions={BTC: 40.0, ETH: -40.0})
    market = MarketRules(min_notional=1e9)
    assert not verdict(buy(SOL, qty=1.0, ref=20.0), book, st).approved
    for exit_ in (
        sell(BTC, qty=40.0, limit=50.0),  # far below the last trade, huge notional
        sell(BTC, qty=10.0, kind=K.STOP_LOSS),
        buy(ETH, qty=40.0, ref=50.0, kind=K.EXIT_SHORT),
        buy(ETH, qty=40.0, ref=50.0, kind=K.FLATTEN),
    ):
        assert verdict(exit_, book, st, market=market).approved, exit_


def test_approved_intents_are_rounded_to_the_market_grid() -> None:
    market = MarketRules(amount_step=0.01, price_tick=0.5)
    b = verdict(buy(qty=1.239, limit=100.3), market=market)
    assert b.intent.quantity == 1.23 and b.intent.price == 100.0  # a buy pays at most what it asked
    s = verdict(sell(qty=1.239, limit=100.3), snap(positions={BTC: 2.0}), market=market)
    assert s.intent.quantity == 1.23 and s.intent.price == 100.5  # a sell gets at least what it asked


def test_batch_order_is_reductions_then_instrument() -> None:
    st = state(max_gross_exposure=1.0, max_orders=10)
    flat = snap()
    # two entries of 6000 on 10_000 equity: only one fits; BTC sorts first whatever the input order
    eth, btc = buy(ETH, quote=6000.0, ref=50.0), buy(BTC, quote=6000.0)
    for given in ([eth, btc], [btc, eth]):
        results = check_batch(given, flat, state=st, ts=0, record=False)
        by = {r.intent.instrument: r for r in results}
        assert by[BTC].approved and denied(by[ETH], R.MAX_GROSS_EXPOSURE).value == pytest.approx(1.2)
        assert [r.intent.instrument for r in results] == [i.instrument for i in given]  # given order back
    # an exit in the same bar frees room for the entry, whatever the input order
    held = snap(positions={BTC: 60.0})  # 6000 held
    alone = check_batch([buy(ETH, quote=6000.0, ref=50.0)], held, state=st, ts=0, record=False)
    denied(alone[0], R.MAX_GROSS_EXPOSURE)
    with_exit = check_batch([buy(ETH, quote=6000.0, ref=50.0), sell(BTC, qty=60.0)], held, state=st, ts=0)
    assert all(r.approved for r in with_exit)
    assert st.orders_in_window(0) == 2  # recorded; the dry runs above recorded nothing


def test_bypass_approves_anything_unchanged() -> None:
    st = state(bypass=True, max_order_notional=1.0, max_orders=1, daily_loss_limit=0.01)
    st.record_order(0)
    intent = buy(qty=1.2345, limit=500.0)
    result = verdict(intent, st=st, market=MarketRules(amount_step=0.1))
    assert isinstance(result, RiskApproved) and result.intent is intent
    assert st.on_equity(0, 100.0) is None and st.on_equity(1, 1.0) is None and st.tripped is None


def test_detail_is_plain_json() -> None:
    d = denied(verdict(buy(qty=10.0), st=state(max_order_notional=500.0), ts=123), R.MAX_ORDER_NOTIONAL)
    detail = json.loads(json.dumps(d.detail()))
    assert detail["rule"] == "max_order_notional" and detail["instrument"] == "binance:BTC/USDT"
    assert (detail["limit"], detail["value"], detail["ts"], detail["side"]) == (500.0, 1000.0, 123, "buy")
    assert "1000.00" in detail["message"] and "500" in detail["message"]
    assert json.loads(json.dumps(verdict(buy(qty=1.0)).detail()))["approved"] is True


def test_flatten_intents_close_every_position_and_pass_a_tripped_switch() -> None:
    book = snap(positions={ETH: -3.0, BTC: 2.0, SOL: 0.0})
    intents = flatten_intents(book)
    assert [(i.instrument, i.side, i.quantity, i.kind) for i in intents] == [
        (BTC, OrderSide.SELL, 2.0, K.FLATTEN),
        (ETH, OrderSide.BUY, 3.0, K.FLATTEN),
    ]
    st = state(max_order_notional=1.0)
    st.tripped = KillSwitchTrip(rule=R.DAILY_LOSS, ts=0, equity=1.0, reference=2.0, value=0.5, limit=0.1, message="x")
    assert all(r.approved for r in check_batch(intents, book, state=st, ts=0))


def test_any_holdings_record_will_do() -> None:
    """The live portfolio's own snapshot (equity, cash, positions, prices) needs no conversion."""
    book = SimpleNamespace(equity=10_000.0, cash=6_000.0, positions={BTC: 40.0}, prices={BTC: 100.0, ETH: 50.0})
    st = state(max_gross_exposure=1.0)
    assert check_intent(buy(ETH, quote=6000.0, ref=50.0), book, state=st, ts=0).approved  # 10_000 / 10_000
    denied(check_intent(buy(ETH, quote=6001.0, ref=50.0), book, state=st, ts=0), R.MAX_GROSS_EXPOSURE)
    assert [i.instrument for i in flatten_intents(book)] == [BTC]
