"""Purged walk-forward: folds by time, no overlap of training labels with the test period."""

from __future__ import annotations

import numpy as np
import pytest

from tradeloop.errors import ConfigError
from tradeloop.evaluation import PurgedWalkForward


def events(n_times: int = 100, symbols: int = 3, horizon: int = 7):
    ts = np.repeat(np.arange(n_times, dtype=np.int64) * 10, symbols)  # symbols share timestamps
    rng = np.random.default_rng(0)
    t1 = ts + rng.integers(0, horizon, ts.size) * 10
    return ts, t1


def test_folds_walk_forward_in_time_and_never_split_a_timestamp() -> None:
    ts, t1 = events()
    folds = list(PurgedWalkForward(n_splits=4).split(ts, t1))
    assert [f.index for f in folds] == [0, 1, 2, 3]
    for a, b in zip(folds, folds[1:], strict=False):
        assert a.test_end < b.test_start
    for f in folds:
        test_times = set(ts[f.test])
        assert test_times.isdisjoint(ts[f.train])  # a shared timestamp is all-train or all-test
        assert ts[f.test].min() == f.test_start and ts[f.test].max() == f.test_end
        assert set(np.flatnonzero((ts >= f.test_start) & (ts <= f.test_end))) == set(f.test)


@pytest.mark.parametrize("embargo", [0, 30])
def test_training_labels_end_before_the_test_period_minus_embargo(embargo: int) -> None:
    ts, t1 = events()
    for f in PurgedWalkForward(n_splits=3, embargo_ms=embargo).split(ts, t1):
        assert (t1[f.train] < f.test_start - embargo).all()
        # and nothing was purged that did not have to be
        eligible = np.flatnonzero((ts < f.test_start) & (t1 < f.test_start - embargo))
        assert set(f.train) == set(eligible)


def test_grid_fixes_boundaries_independently_of_events() -> None:
    grid = np.arange(100, dtype=np.int64) * 10
    few = np.array([50, 300, 620, 900], dtype=np.int64)
    bounds = [(f.test_start, f.test_end) for f in PurgedWalkForward(n_splits=4).split(few, grid=grid)]
    expected = [(int(b[0]), int(b[-1])) for b in np.array_split(grid, 5)[1:]]
    assert bounds == [b for b in expected if any(few < b[0])]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ConfigError, match="n_splits=0"):
        PurgedWalkForward(n_splits=0)
    with pytest.raises(ConfigError, match="t1 >= ts"):
        list(PurgedWalkForward().split(np.array([10, 20]), np.array([5, 20])))
    with pytest.raises(ConfigError, match="distinct times"):
        list(PurgedWalkForward(n_splits=4).split(np.array([1, 2, 3])))
