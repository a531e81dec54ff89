"""Triple-barrier labels on hand-made bars: which barrier, at what price, and when."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.thresholds import BarrierConfig, triple_barrier_labels

H = 3_600_000


def bars(rows: list[tuple[float, float, float, float]], warm: int = 30) -> pl.DataFrame:
    """``warm`` flat-ish bars (for sigma) followed by the given (open, high, low, close)."""
    rng = np.random.default_rng(1)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, warm)))
    closes *= 100.0 / closes[-1]
    head = [(c, c * 1.001, c * 0.999, c) for c in closes]
    allrows = head + rows
    return pl.DataFrame(
        {
            "ts": [i * H for i in range(len(allrows))],
            "open": [r[0] for r in allrows],
            "high": [r[1] for r in allrows],
            "low": [r[2] for r in allrows],
            "close": [r[3] for r in allrows],
        }
    )


def label_one(frame: pl.DataFrame, *, direction: float = 1.0, **cfg) -> dict:
    config = BarrierConfig(vol_window=20, cost=0.0, **cfg)
    out = triple_barrier_labels(frame, np.array([29]), direction=np.array([direction]), config=config)
    return out.row(0, named=True) if out.height else {}


def sigma_at(frame: pl.DataFrame, row: int = 29) -> float:
    logret = np.diff(np.log(frame["close"].to_numpy()), prepend=np.nan)
    return float(np.std(logret[row - 19 : row + 1], ddof=1))


def test_target_hit_fills_at_the_target() -> None:
    frame = bars([(100, 100.5, 99.8, 100.2), (100.2, 130, 100.1, 129)] + [(129, 129, 129, 129)] * 5)
    s = sigma_at(frame)
    row = label_one(frame, profit_mult=1.0, stop_mult=1.0, horizon=5)
    assert row["barrier"] == "target"
    assert row["ret"] == pytest.approx(s)  # fills exactly at +1 sigma from the entry open (100)
    assert row["t1"] == 31 * H and row["label"] == 1


def test_bar_touching_both_barriers_counts_as_stop() -> None:
    frame = bars([(100, 150, 50, 100)] + [(100, 100, 100, 100)] * 5)
    row = label_one(frame, profit_mult=1.0, stop_mult=1.0, horizon=5)
    assert row["barrier"] == "stop" and row["label"] == 0
    assert row["ret"] == pytest.approx(-sigma_at(frame))


def test_gap_through_the_stop_fills_at_the_open() -> None:
    frame = bars([(100, 100.1, 99.9, 100), (80, 81, 79, 80)] + [(80, 80, 80, 80)] * 5)
    row = label_one(frame, profit_mult=1.0, stop_mult=1.0, horizon=5)
    assert row["barrier"] == "stop" and row["ret"] == pytest.approx(-0.2)


def test_time_limit_values_at_the_close_and_cost_decides_the_label() -> None:
    frame = bars([(100, 100.01, 99.99, 100)] * 3 + [(100, 100.01, 99.99, 100.05)] + [(100, 100, 100, 100)] * 3)
    config = dict(profit_mult=50.0, stop_mult=50.0, horizon=4)
    row = label_one(frame, **config)
    assert row["barrier"] == "time" and row["ret"] == pytest.approx(0.0005) and row["t1"] == 33 * H
    paid = triple_barrier_labels(frame, np.array([29]), config=BarrierConfig(vol_window=20, cost=0.001, **config))
    assert paid["label"][0] == 0 and paid["net_ret"][0] == pytest.approx(-0.0005)


def test_short_mirrors_long() -> None:
    frame = bars([(100, 100.2, 60, 61)] + [(61, 61, 61, 61)] * 5)
    row = label_one(frame, direction=-1.0, profit_mult=1.0, stop_mult=1.0, horizon=5)
    assert row["barrier"] == "target" and row["ret"] == pytest.approx(sigma_at(frame))


def test_events_whose_time_limit_lies_past_the_data_are_not_labelled() -> None:
    frame = bars([(100, 100.01, 99.99, 100)] * 3)
    assert label_one(frame, profit_mult=50.0, stop_mult=50.0, horizon=10) == {}


def test_missing_column_and_out_of_range_rows_are_refused() -> None:
    frame = bars([(100, 100, 100, 100)] * 3)
    with pytest.raises(ConfigError, match="'high'"):
        triple_barrier_labels(frame.drop("high"), np.array([1]))
    with pytest.raises(ConfigError, match="event rows"):
        triple_barrier_labels(frame, np.array([frame.height]))


def test_a_label_closed_by_a_barrier_is_known_before_its_time_limit(btc_4h: pl.DataFrame) -> None:
    """What a retrain at time T can learn equals what the full history says about the labels
    closed before T: a barrier touched before the data ends closes the label even when the
    time limit lies beyond the data (the live refit and the walk-forward see the same events)."""
    config = BarrierConfig(horizon=48, cost=0.002)
    frame = btc_4h.head(3000)
    rows = np.arange(100, 3000, 7)
    full = triple_barrier_labels(frame, rows, config=config)
    for cut in (1500, 2200, 2999):
        known = triple_barrier_labels(frame.head(cut), rows[rows < cut], config=config)
        closed = full.filter(pl.col("t1") < frame["ts"][cut])
        assert known.select("ts", "t1", "ret", "label").equals(closed.select("ts", "t1", "ret", "label"))
        # some of them close by a barrier while their time limit is still beyond the cut
        assert (closed.filter(pl.col("barrier") != "time")["row"] + 48 >= cut).any()
