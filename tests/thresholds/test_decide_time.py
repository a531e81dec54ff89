"""Decisions never read the wall clock: the decision time is an argument, and a backtest
decides each bar at its own time, so a model ages out bar by bar exactly as live."""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import pytest

from tradeloop.research.walkforward import fit_threshold
from tradeloop.strategies import SmaCross
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds import BarrierConfig, meta_dataset
from tradeloop.thresholds.decide import decide

DAY = 86_400_000


@pytest.fixture(scope="module")
def setup(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame):
    candles = (
        pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC-USD")), eth_4h.with_columns(symbol=pl.lit("ETH-USD"))])
        .sort("symbol", "ts")
        .tail(8000)
    )
    candles = candles.sort("symbol", "ts")
    strategy = SmaCross(fast=10, slow=40)
    events = meta_dataset(candles, strategy, barriers=BarrierConfig())
    cut = int(candles["ts"].quantile(0.5))
    model = fit_threshold(events.filter(pl.col("t1") < cut), strategy, BarrierConfig(), until=cut)
    model.estimator.threshold_ = float(np.median(model.probabilities(events)))  # entries taken and refused
    return candles.filter(pl.col("ts") >= cut - 100 * 4 * 3_600_000), model


def test_decide_requires_the_decision_time(setup) -> None:
    candles, model = setup
    with pytest.raises(TypeError):
        decide(candles, model)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        model.is_stale()  # type: ignore[call-arg]


def test_no_wall_clock_on_the_decision_path(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    candles, model = setup
    expected = decide(candles, model, now_ms="bar")

    def no_clock(*_a, **_k):
        raise AssertionError("the decision path read the wall clock")

    monkeypatch.setattr(time, "time", no_clock)
    monkeypatch.setattr(time, "time_ns", no_clock)
    assert decide(candles, model, now_ms="bar")["signal"].equals(expected["signal"])
    decide(candles, model, now_ms=int(candles["ts"].max()))


def test_each_bar_is_decided_at_its_own_time_and_stale_bars_take_no_entry(setup) -> None:
    candles, model = setup
    model.max_age_ms = 60 * DAY
    fresh = decide(candles, model, now_ms=model.trained_until)  # one time for all rows: never stale
    per_bar = decide(candles, model, now_ms="bar")
    stale = (per_bar["ts"] - model.trained_until > model.max_age_ms).to_numpy()
    assert stale.any() and (~stale).any()
    entries = lambda frame: (frame["signal"].to_numpy() & ENTRIES) != 0  # noqa: E731
    assert not entries(per_bar)[stale].any()  # reduce-only once stale
    assert entries(fresh)[stale].any()  # the model would have entered there
    assert np.array_equal(entries(per_bar)[~stale], entries(fresh)[~stale])
    model.on_stale = "break_even"  # the other rule: entries need the break-even p*
    p_star = model.estimator.p_star_
    proba = per_bar["proba"].to_numpy()
    taken = entries(decide(candles, model, now_ms="bar"))[stale]
    scored = ~np.isnan(proba[stale].astype(float))
    assert np.array_equal(taken[scored], (proba[stale][scored] > p_star))
    model.on_stale = "reduce_only"
