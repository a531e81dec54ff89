"""The live decision on a rolling window of ``min_window_bars`` equals the decision on the full
history, bar for bar, on the bundled real sample with a trained model; shorter windows do not."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.research.walkforward import fit_threshold
from tradeloop.strategies import STRATEGIES, Breakout, SmaCross, get_strategy
from tradeloop.thresholds import BarrierConfig, ThresholdModel, meta_dataset
from tradeloop.thresholds.decide import apply_model, decide, enrich
from tradeloop.thresholds.warmup import min_window_bars, window_needs

DECIDED = 400  # bars decided one by one, as the live engine does
SYMBOLS = ("BTC-USD", "ETH-USD")


@pytest.fixture(scope="module")
def series(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> dict[str, pl.DataFrame]:
    return {s: f.sort("ts").with_columns(symbol=pl.lit(s)) for s, f in zip(SYMBOLS, (btc_4h, eth_4h), strict=True)}


@pytest.fixture(scope="module")
def model(series: dict[str, pl.DataFrame]) -> ThresholdModel:
    """A champion trained on the events whose labels closed before the decided bars."""
    candles = pl.concat(series.values())
    start = int(series[SYMBOLS[0]]["ts"][-DECIDED])
    strategy, barriers = SmaCross(fast=10, slow=40), BarrierConfig()
    events = meta_dataset(candles.filter(pl.col("ts") < start), strategy, barriers=barriers)
    model = fit_threshold(events.filter(pl.col("t1") < start), strategy, barriers)
    # the sample gives little edge: put the bar at the median so entries are taken and refused
    model.estimator.threshold_ = float(np.median(model.probabilities(events)))
    return model


def rolling_decisions(
    series: dict[str, pl.DataFrame], model: ThresholdModel, window: int, *, at: list[int] | None = None
) -> pl.DataFrame:
    """Each of the last ``DECIDED`` bars (or those ``at``) decided on the last ``window`` bars of every symbol:
    ``decide`` as the live engine calls it, its model applied to the decided bar's rows only
    (``apply_model`` is row by row; the earlier rows' probabilities would only cost time)."""
    now = model.trained_until + 1  # one decision time: staleness is not what is compared here
    rows = []
    for t in at or series[SYMBOLS[0]]["ts"][-DECIDED:]:
        parts = []
        for frame in series.values():
            end = int(np.searchsorted(frame["ts"].to_numpy(), t, side="right"))
            parts.append(frame[max(0, end - window) : end])
        enriched = enrich(pl.concat(parts), model.strategy, model.features).filter(pl.col("ts") == t)
        rows.append(apply_model(enriched, model, now_ms=now).select("symbol", "ts", "signal", "proba"))
    return pl.concat(rows).sort("symbol", "ts")


def full_decisions(series: dict[str, pl.DataFrame], model: ThresholdModel) -> pl.DataFrame:
    decided = decide(pl.concat(series.values()), model, now_ms=model.trained_until + 1)
    last = series[SYMBOLS[0]]["ts"][-DECIDED]
    return decided.filter(pl.col("ts") >= last).select("symbol", "ts", "signal", "proba").sort("symbol", "ts")


def test_a_window_of_min_window_bars_decides_like_the_full_history(series, model) -> None:
    window = min_window_bars(model.strategy, model.features)
    assert window == 2 + 373  # Wilder's RSI forgetting the window's start (tradeloop.features.memory)
    full = full_decisions(series, model)
    rolled = rolling_decisions(series, model, window)
    assert rolled.select("symbol", "ts").equals(full.select("symbol", "ts"))
    entries = full.filter(pl.col("proba").is_not_null())
    # meaningful: entries both taken and refused by the model, and exits
    assert entries.height >= 8 and entries["signal"].n_unique() == 2 and (full["signal"] >= 4).any()
    assert rolled["signal"].equals(full["signal"])
    assert rolled["proba"].is_null().equals(full["proba"].is_null())
    np.testing.assert_allclose(rolled["proba"].drop_nulls(), full["proba"].drop_nulls(), rtol=0, atol=1e-9)


def test_a_shorter_window_changes_decisions(series, model) -> None:
    """Why the window is computed: on 60 bars the SMA crossing is right, but RSI is not, so
    the model's probabilities move (bars where an entry fired, and decisions flip)."""
    full = full_decisions(series, model).filter(pl.col("proba").is_not_null())
    rolled = rolling_decisions(series, model, 60, at=full["ts"].unique().sort().to_list())
    rolled = full.select("symbol", "ts").join(rolled, on=["symbol", "ts"], how="left")
    moved = (rolled["proba"] - full["proba"]).abs()
    assert moved.max() > 1e-6 and (rolled["signal"] != full["signal"]).sum() >= 1


def fired_bars(strategy, candles: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The full-history signals, and the bars (3000..9000) where one fired."""
    full = strategy.signals(candles, by=None)["signal"].to_numpy()
    fired = np.flatnonzero(full[3000:9000]) + 3000
    assert fired.size >= 10
    return full, fired


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_the_crossing_needs_the_bar_before_the_score(name: str, btc_4h: pl.DataFrame) -> None:
    """Strategies alone (features=()): the score's window plus the bar it crosses from.
    One bar fewer and the first warm score has nothing to cross from: every signal is lost."""
    strategy = get_strategy(name)
    window = min_window_bars(strategy, ())
    assert window == strategy.warmup_bars + 2
    full, fired = fired_bars(strategy, btc_4h)
    for end in fired + 1:
        assert strategy.signals(btc_4h[end - window + 1 : end], by=None)["signal"][-1] == 0
    if strategy.rule.exit == strategy.rule.entry:  # no neutral band: the bar before decides the side
        for end in fired + 1:
            assert strategy.signals(btc_4h[end - window : end], by=None)["signal"][-1] == full[end - 1]


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_rules_with_a_neutral_band_decide_like_the_full_history_on_the_decision_window(
    name: str, btc_4h: pl.DataFrame
) -> None:
    """A neutral band remembers the last zone however long ago (module docstring): a window
    that does not reach it misses the signal (it can never invent one, so the fired bars are
    the ones to check). The decision's window (the model's features included) reaches it on
    the sample; the score's own window alone does not, for breakout."""
    strategy = get_strategy(name)
    window = min_window_bars(strategy)
    full, fired = fired_bars(strategy, btc_4h)
    for end in fired + 1:
        assert strategy.signals(btc_4h[end - window : end], by=None)["signal"][-1] == full[end - 1]
    if name == "breakout":
        short = min_window_bars(strategy, ())
        assert any(
            strategy.signals(btc_4h[end - short : end], by=None)["signal"][-1] != full[end - 1] for end in fired + 1
        )


def test_the_window_takes_the_longest_need_and_names_it() -> None:
    assert min_window_bars(Breakout(window=500)) == 502  # the channel outgrows RSI
    needs = window_needs(SmaCross(), ("score", "rsi_14", "vol_20"))
    assert needs == {"sma_cross score and the bar before": 31, "rsi_14": 375, "vol_20": 21}
    with pytest.raises(ConfigError, match="'nope' is unknown"):
        min_window_bars(SmaCross(), ("score", "nope"))
