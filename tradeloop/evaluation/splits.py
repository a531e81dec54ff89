"""Leakage-free walk-forward splits by time, with purging and an embargo.

Several symbols share timestamps, so folds are cut on the *time axis*, never by row count:
the sorted unique decision times are split into ``n_splits + 1`` equal blocks; fold ``k``
tests on block ``k + 1`` and trains on the blocks before it (expanding window).

* **Purge:** a training event whose label window ``[ts, t1]`` reaches into the test period
  (``t1 >= test_start - embargo``) is dropped: its outcome overlaps what is tested.
* **Embargo:** ``embargo_ms`` of extra clearance before the test period, for features with
  serial correlation beyond the label window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from tradeloop.errors import ConfigError


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # row indices
    test: np.ndarray
    test_start: int  # ms
    test_end: int  # ms, inclusive


@dataclass(frozen=True, kw_only=True)
class PurgedWalkForward:
    n_splits: int = 4
    embargo_ms: int = 0
    min_train: int = 1

    def __post_init__(self) -> None:
        if self.n_splits < 1:
            raise ConfigError(f"n_splits={self.n_splits}: need at least 1 fold")
        if self.embargo_ms < 0:
            raise ConfigError(f"embargo_ms={self.embargo_ms}: must be >= 0")

    def split(self, ts: np.ndarray, t1: np.ndarray | None = None, *, grid: np.ndarray | None = None) -> Iterator[Fold]:
        """Folds over events with decision times ``ts`` and label ends ``t1`` (default: ts).

        ``grid`` (e.g. every candle time) fixes the fold boundaries independently of where
        the events fall, so configurations with different events share the same test periods.
        """
        ts = np.asarray(ts, dtype=np.int64)
        t1 = ts if t1 is None else np.asarray(t1, dtype=np.int64)
        if ts.shape != t1.shape:
            raise ConfigError(f"ts and t1 differ in length: {ts.shape} vs {t1.shape}")
        if np.any(t1 < ts):
            raise ConfigError("every label must end at or after its decision time (t1 >= ts)")
        times = np.unique(ts if grid is None else np.asarray(grid, dtype=np.int64))
        if times.size < self.n_splits + 1:
            raise ConfigError(
                f"{times.size} distinct times cannot make {self.n_splits} walk-forward folds; "
                "use fewer splits or more data"
            )
        blocks = np.array_split(times, self.n_splits + 1)
        for k in range(self.n_splits):
            block = blocks[k + 1]
            start, end = int(block[0]), int(block[-1])
            test = np.flatnonzero((ts >= start) & (ts <= end))
            train = np.flatnonzero((ts < start) & (t1 < start - self.embargo_ms))
            if train.size < self.min_train:
                continue
            yield Fold(index=k, train=train, test=test, test_start=start, test_end=end)
