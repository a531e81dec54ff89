"""The kill switch and the risk state's memory (tradeloop.risk.state), by hand-made equity paths."""

import json

import pytest

from tests.risk.helpers import BTC, DAY, OFF, H, buy, sell, snap, state
from tradeloop.errors import RiskError
from tradeloop.risk import RiskConfig, RiskRule, RiskState, check_intent


def test_daily_loss_trips_at_the_limit_from_the_days_start() -> None:
    st = state(daily_loss_limit=0.10)
    assert st.on_equity(0, 1000.0) is None  # the first equity starts day 0
    assert st.on_equity(H, 900.01) is None  # 1 - 900.01/1000 = 9.999%: inside
    trip = st.on_equity(2 * H, 900.0)  # exactly 10%
    assert trip is not None and trip.rule == RiskRule.DAILY_LOSS
    assert (trip.ts, trip.equity, trip.reference, trip.limit) == (2 * H, 900.0, 1000.0, 0.10)
    assert trip.value == pytest.approx(0.10)
    assert st.tripped == trip


def test_the_day_starts_at_the_equity_before_its_first_bar() -> None:
    st = state(daily_loss_limit=0.10)
    st.on_equity(DAY - H, 1000.0)  # the last bar of day 0 closes at midnight with 1000
    assert st.on_equity(DAY, 905.0) is None  # day 1's first bar: 9.5% below 1000, not its own 905
    assert st.day_start_equity == 1000.0
    trip = st.on_equity(DAY + H, 899.99)  # 10.001% below 1000 (0.6% below 905)
    assert trip is not None and trip.reference == 1000.0
    # a new day starts from the day before's last equity, even after a gap of days
    st2 = state(daily_loss_limit=0.10)
    st2.on_equity(0, 1000.0)
    st2.on_equity(H, 950.0)
    assert st2.on_equity(3 * DAY, 860.0) is None  # 9.47% below 950 (14% below 1000)
    assert (st2.day, st2.day_start_equity) == (3, 950.0)


def test_drawdown_from_the_high_water_mark() -> None:
    st = state(max_drawdown=0.20)
    for t, e in enumerate((1000.0, 1200.0, 1100.0)):
        assert st.on_equity(t * H, e) is None
    assert st.high_water == 1200.0
    assert st.on_equity(3 * H, 960.01) is None  # 1 - 960.01/1200 = 19.999%
    trip = st.on_equity(4 * H, 960.0)  # 20%
    assert trip is not None and trip.rule == RiskRule.MAX_DRAWDOWN and trip.reference == 1200.0
    assert st.drawdown == pytest.approx(0.20)


def test_daily_loss_is_named_when_both_trip_on_one_bar() -> None:
    st = state(daily_loss_limit=0.10, max_drawdown=0.20)
    st.on_equity(0, 1000.0)
    trip = st.on_equity(H, 700.0)  # 30% both ways
    assert trip is not None and trip.rule == RiskRule.DAILY_LOSS


def test_tripped_stays_tripped_until_acknowledged() -> None:
    st = state(max_drawdown=0.20)
    st.on_equity(0, 1000.0)
    assert st.on_equity(H, 800.0) is not None
    assert st.on_equity(2 * H, 2000.0) is None  # a recovery neither re-reports nor clears it
    assert st.tripped is not None and st.high_water == 2000.0  # the mark still moves
    assert check_intent(buy(qty=1.0), snap(), state=st, ts=2 * H).rule == RiskRule.KILL_SWITCH
    assert check_intent(sell(qty=1.0), snap(positions={BTC: 1.0}), state=st, ts=2 * H).approved
    st.on_equity(3 * H, 950.0)
    cleared = st.acknowledge()
    assert cleared is not None and cleared.ts == H and st.tripped is None
    # the limits restart from the last equity, 950: 20% below it is 760
    assert st.high_water == 950.0 and st.day_start_equity == 950.0
    assert check_intent(buy(qty=1.0), snap(), state=st, ts=3 * H).approved
    assert st.on_equity(4 * H, 760.01) is None
    assert st.on_equity(5 * H, 760.0) is not None
    assert state().acknowledge() is None  # nothing to clear


def test_bars_out_of_order_and_bad_equity_are_refused() -> None:
    st = state(max_drawdown=0.2)
    st.on_equity(2 * DAY, 1000.0)
    st.on_equity(2 * DAY, 1000.0)  # the same day again is fine
    with pytest.raises(RiskError, match="before day 2"):
        st.on_equity(DAY, 1000.0)
    with pytest.raises(RiskError, match="not a number"):
        st.on_equity(2 * DAY, float("nan"))


def test_throttle_memory_is_bounded_and_off_when_the_throttle_is() -> None:
    st = state(max_orders=3, throttle_window_ms=1000)
    for t in range(10):
        st.record_order(t)
    assert list(st.order_ts) == [7, 8, 9]
    assert st.orders_in_window(9) == 3 and st.orders_in_window(1008) == 1  # (8, 1008] holds 9
    off = state()
    off.record_order(0)
    assert len(off.order_ts) == 0


def test_json_round_trip_keeps_everything() -> None:
    cfg = RiskConfig(**{**OFF, "daily_loss_limit": 0.1, "max_drawdown": 0.2, "max_orders": 5})
    st = RiskState(cfg)
    st.on_equity(DAY - H, 1000.0)
    st.on_equity(DAY, 1100.0)
    for t in (DAY, DAY, DAY + 5):
        st.record_order(t)
    st.on_equity(DAY + H, 890.0)  # 11% below the day's start (day 0's last equity, 1000): tripped
    text = st.to_json()
    json.loads(text)  # plain JSON
    back = RiskState.from_json(text, config=cfg)
    assert back == st
    assert (back.day, back.day_start_equity, back.last_equity, back.high_water) == (1, 1000.0, 890.0, 1100.0)
    assert back.tripped == st.tripped and back.tripped is not None and back.tripped.rule == RiskRule.DAILY_LOSS
    assert list(back.order_ts) == [DAY, DAY, DAY + 5]
    # a smaller max_orders keeps the newest timestamps
    small = RiskState.from_json(text, config=cfg.model_copy(update={"max_orders": 2}))
    assert list(small.order_ts) == [DAY, DAY + 5]
    for bad in ("", "[]", '{"version": 99}', text.replace('"day": 1', '"day": "x"')):
        with pytest.raises(RiskError, match="RiskState.to_json"):
            RiskState.from_json(bad, config=cfg)
