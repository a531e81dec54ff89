"""Feedback from closed trades: round trips from fills, closed labels only, minimum samples,
capped steps, bounds, holds and restarts (``tradeloop.thresholds.feedback``)."""

from __future__ import annotations

import numpy as np
import pytest

from tradeloop.thresholds import OnlineConfig
from tradeloop.thresholds.feedback import (
    ClosedTrade,
    Control,
    TradeFill,
    closed_trades,
    replay_thresholds,
)

H = 3_600_000


def fill(
    i: int, order: int, side: str, qty: float, price: float, fee: float, ts: int, symbol: str = "BTC"
) -> TradeFill:
    return TradeFill(id=i, order_id=order, symbol=symbol, side=side, quantity=qty, price=price, fee=fee, ts=ts)


def test_round_trips_from_fills_only_once_closed() -> None:
    fills = [
        fill(1, 10, "buy", 2.0, 100.0, 0.2, 1 * H),  # long 2 @ 100
        fill(2, 11, "sell", 1.0, 110.0, 0.11, 2 * H),  # half out
        fill(3, 12, "sell", 1.0, 90.0, 0.09, 3 * H),  # flat: closed
        fill(4, 13, "sell", 1.0, 50.0, 0.05, 4 * H, symbol="ETH"),  # a short, never closed
        fill(5, 14, "buy", 1.0, 10.0, 0.0, 5 * H, symbol="SOL"),  # opened by an order without a probability
        fill(6, 15, "sell", 1.0, 12.0, 0.0, 6 * H, symbol="SOL"),
    ]
    [trade] = closed_trades(fills, {10: 0.7, 13: 0.6})
    # cash: -200 - 0.2 + 110 - 0.11 + 90 - 0.09 = -0.4, over the 200 the position cost
    assert trade == ClosedTrade(
        symbol="BTC", entry_order_id=10, probability=0.7, net_return=pytest.approx(-0.4 / 200), closed_ts=3 * H,
        closing_fill_id=3,
    )  # fmt: skip


def test_a_fill_that_crosses_zero_closes_one_trade_and_opens_the_next() -> None:
    fills = [
        fill(1, 1, "sell", 1.0, 100.0, 0.0, H),
        fill(2, 2, "buy", 3.0, 90.0, 0.0, 2 * H),
        fill(3, 3, "sell", 2.0, 99.0, 0.0, 3 * H),
    ]
    first, second = closed_trades(fills, {1: 0.8, 2: 0.55})
    assert (first.probability, first.net_return, first.closed_ts) == (0.8, pytest.approx(0.1), 2 * H)
    assert (second.probability, second.net_return, second.closed_ts) == (0.55, pytest.approx(0.1), 3 * H)


def trades(n: int, *, seed: int = 0, every: int = H) -> list[ClosedTrade]:
    """Outcomes where only probabilities above 0.6 win, one per bar."""
    rng = np.random.default_rng(seed)
    return [
        ClosedTrade(
            symbol="BTC",
            entry_order_id=i,
            probability=float(p),
            net_return=0.02 if p > 0.6 else -0.01,
            closed_ts=(i + 1) * every,
            closing_fill_id=i,
        )  # fmt: skip
        for i, p in enumerate(rng.uniform(0.3, 0.9, n))
    ]


def test_nothing_moves_before_min_samples_then_steps_are_capped_and_bounded() -> None:
    config = OnlineConfig(min_samples=8, max_step=0.01, grid_width=0.2, discount=0.99, bounds=(0.4, 0.6))
    outcomes = trades(300)
    bars = [i * H for i in range(302)]
    made = replay_thresholds(
        outcomes, bars=bars, controls=[Control(bar_ts=0, action="start", threshold=0.45)], config=config
    )
    assert [a.bar_ts for a in made] == [t.closed_ts for t in outcomes]  # one per bar with a closed outcome
    before = [a for a in made if a.observed < 8]
    assert before and all(not a.moved and a.new == 0.45 for a in before)  # fewer than min_samples: no move
    assert any(a.moved for a in made)
    assert max(abs(a.step) for a in made) <= 0.01 + 1e-12
    assert all(0.4 <= a.new <= 0.6 for a in made)
    assert made[-1].new > 0.55  # learned that low-probability trades lose
    assert [a.old for a in made[1:]] == [a.new for a in made[:-1]]


def test_open_trades_and_trades_closing_after_the_last_bar_do_not_count() -> None:
    config = OnlineConfig(min_samples=1, max_step=0.05)
    outcomes = trades(10)
    bars = [i * H for i in range(6)]  # the trades closing at 6H..10H are still open at the last bar
    made = replay_thresholds(
        outcomes, bars=bars, controls=[Control(bar_ts=0, action="start", threshold=0.5)], config=config
    )
    assert [a.bar_ts for a in made] == [H, 2 * H, 3 * H, 4 * H, 5 * H] and made[-1].observed == 5


def test_a_hold_drops_outcomes_and_a_start_begins_again_from_its_threshold() -> None:
    config = OnlineConfig(min_samples=1, max_step=0.05, grid_width=0.2)
    outcomes = trades(40)
    bars = [i * H for i in range(42)]
    controls = [
        Control(bar_ts=0, action="start", threshold=0.5),
        Control(bar_ts=10 * H, action="hold"),
        Control(bar_ts=20 * H, action="release"),
        Control(bar_ts=30 * H, action="start", threshold=0.52),
    ]
    made = replay_thresholds(outcomes, bars=bars, controls=controls, config=config)
    at = {a.bar_ts: a for a in made}
    assert not any(10 * H <= ts < 20 * H for ts in at)  # held: nothing learned, nothing moved
    assert at[20 * H].old == at[9 * H].new  # the threshold stayed where the hold found it
    assert at[30 * H].old == 0.52 and at[30 * H].observed == 1  # a new learner
    unheld = replay_thresholds(outcomes, bars=bars, controls=controls[:1], config=config)
    assert [a.new for a in unheld][:9] == [a.new for a in made][:9]  # the same outcomes, the same thresholds


def test_a_fill_stored_late_counts_at_the_first_bar_after_the_one_committed_when_it_was_stored() -> None:
    """Rule 2: the venue reported the closing fill at 3H only when the engine resumed after
    committing 7H (a reconciliation); the live engine learns from it at 8H, so the replay must."""
    config = OnlineConfig(min_samples=1, max_step=0.05)
    fills = [fill(1, 10, "buy", 1.0, 100.0, 0.0, H), fill(2, 11, "sell", 1.0, 110.0, 0.0, 3 * H)]
    late = [*fills[:1], TradeFill(**{**{f: getattr(fills[1], f) for f in TradeFill.__slots__}, "after_bar_ts": 7 * H})]
    bars = [i * H for i in range(10)]
    start = [Control(bar_ts=0, action="start", threshold=0.5)]
    [on_time] = replay_thresholds(closed_trades(fills, {10: 0.7}), bars=bars, controls=start, config=config)
    [trade] = closed_trades(late, {10: 0.7})
    assert trade.after_bar_ts == 7 * H and not trade.counts_at(7 * H) and trade.counts_at(8 * H)
    [learned] = replay_thresholds([trade], bars=bars, controls=start, config=config)
    assert (on_time.bar_ts, learned.bar_ts) == (3 * H, 8 * H) and learned.new == on_time.new
