"""The research work cache (tradeloop.features.cache): the same results with it as without it,
keyed by the data's content, bounded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tradeloop.features.cache import WorkCache, frame_digest, reusing
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.tuning import TuningConfig, tune
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import BarrierConfig, meta_dataset
from tradeloop.thresholds.decide import enrich

POLICY = RetrainPolicy(retrain_every_days=60, max_model_age_days=90)


@pytest.fixture(scope="module")
def candles(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC-USD")), eth_4h.with_columns(symbol=pl.lit("ETH-USD"))])
    return both.filter(pl.col("ts") >= both["ts"].max() - 2 * 365 * 86_400_000).sort("symbol", "ts")


def test_a_study_with_the_cache_scores_every_trial_as_without_it(candles: pl.DataFrame, tmp_path: Path) -> None:
    config = TuningConfig(n_trials=5, n_splits=3, max_drawdown=-1.0, seed=11, policy=POLICY)
    runs = {
        reuse: tune(candles, config=config, timeframe="4h", study_dir=tmp_path / str(reuse), reuse=reuse)
        for reuse in (False, True)
    }
    plain, cached = runs[False], runs[True]
    assert [t.params for t in cached.study.trials] == [t.params for t in plain.study.trials]
    assert [t.value for t in cached.study.trials] == [t.value for t in plain.study.trials]
    assert [t.state for t in cached.study.trials] == [t.state for t in plain.study.trials]
    assert cached.best_params == plain.best_params and cached.best_value == plain.best_value
    np.testing.assert_array_equal(cached.best_returns, plain.best_returns)


def test_trials_share_features_signals_and_fits_and_get_the_same_frames(candles: pl.DataFrame) -> None:
    cache = WorkCache()
    barriers = BarrierConfig(horizon=12, cost=0.002)
    for strategy in (SmaCross(fast=10, slow=30), SmaCross(fast=10, slow=30), SmaCross(fast=5, slow=40)):
        with reusing(cache):
            events, enriched = meta_dataset(candles, strategy, barriers=barriers), enrich(candles, strategy)
        assert events.equals(meta_dataset(candles, strategy, barriers=barriers))
        assert enriched.equals(enrich(candles, strategy))
    # features once (meta and enrich), signals once per strategy and symbol / frame; the repeat hit all
    assert cache.misses == 2 + 2 * (2 + 1) and cache.hits == (2 + 2 + 1) + 2


def test_changed_candles_never_hit_what_other_candles_left(candles: pl.DataFrame) -> None:
    strategy, barriers = SmaCross(fast=10, slow=30), BarrierConfig(horizon=12, cost=0.002)
    cache = WorkCache()
    with reusing(cache):
        before = meta_dataset(candles, strategy, barriers=barriers)
    bar = candles.height // 2
    changed = candles.with_columns(
        close=pl.when(pl.int_range(pl.len()) == bar).then(pl.col("close") * 1.5).otherwise("close")
    )
    assert frame_digest(changed) != frame_digest(candles)
    hits = cache.hits
    with reusing(cache):
        after = meta_dataset(changed, strategy, barriers=barriers)
    assert cache.hits == hits  # nothing computed from the old candles was reused
    assert after.equals(meta_dataset(changed, strategy, barriers=barriers))
    assert not after.equals(before)


def test_the_cache_is_bounded_in_entries_and_bytes() -> None:
    cache = WorkCache(max_entries=3, max_bytes=10_000)
    for i in range(10):
        assert cache.get(("n", i), lambda i=i: i * i) == i * i
    assert len(cache) == 3 and cache.get(("n", 9), lambda: -1) == 81  # the newest stay
    assert cache.get(("n", 0), lambda: -1) == -1  # the oldest went
    small = np.zeros(500)  # 4,000 bytes: two fit, a third pushes the oldest out
    for i in range(3):
        cache.get(("a", i), lambda: small.copy())
    assert cache.nbytes <= 10_000 and len(cache) <= 3
    huge = np.zeros(2_000)  # larger than the whole budget: returned, never kept
    assert cache.get(("huge",), lambda: huge) is huge and ("huge",) not in cache._entries
    assert cache.nbytes <= 10_000
