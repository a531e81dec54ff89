"""The engineered candidate features: causal, exact on the live engine's rolling window (the
cross-sectional ranks included), and a model that reads them decides on that window as on the
full history."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.features import CANDIDATE_FEATURES, compute_features
from tradeloop.research.walkforward import fit_threshold
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import BarrierConfig, meta_dataset
from tradeloop.thresholds.dataset import CANDIDATE_META_FEATURES
from tradeloop.thresholds.decide import apply_model, decide, enrich
from tradeloop.thresholds.warmup import min_window_bars

NAMES = [s.name for s in CANDIDATE_FEATURES]
CROSS = [s.name for s in CANDIDATE_FEATURES if s.source is not None]


@pytest.fixture(scope="module")
def three(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    """Three symbols on one time grid: BTC, ETH, and a third made from BTC's bars times a random walk."""
    grid = btc_4h.join(eth_4h.select("ts"), on="ts", how="semi").sort("ts")
    walk = np.exp(np.cumsum(np.random.default_rng(11).normal(scale=0.01, size=grid.height)))
    third = grid.with_columns(
        *(pl.col(c) * pl.Series(walk) for c in ("open", "high", "low", "close")),
        volume=pl.col("volume") * pl.Series(walk[::-1]),
    )
    parts = [
        grid.with_columns(symbol=pl.lit("BTC")),
        eth_4h.join(grid.select("ts"), on="ts", how="semi").with_columns(symbol=pl.lit("ETH")),
        third.with_columns(symbol=pl.lit("ZED")),
    ]
    return pl.concat([p.select("symbol", "ts", "open", "high", "low", "close", "volume") for p in parts])


def test_candidates_never_look_ahead(three: pl.DataFrame) -> None:
    cut = int(three["ts"].unique().sort()[700])
    short = compute_features(three.filter(pl.col("ts") <= cut), CANDIDATE_FEATURES)
    long = compute_features(three.filter(pl.col("ts") <= cut + 200 * 14_400_000), CANDIDATE_FEATURES)
    long = long.join(short.select("symbol", "ts"), on=["symbol", "ts"], how="semi")
    assert short.sort("symbol", "ts").equals(long.sort("symbol", "ts"))


def test_cross_sectional_ranks_against_numpy(three: pl.DataFrame) -> None:
    frame = compute_features(three, CANDIDATE_FEATURES).sort("ts", "symbol")
    ret_24 = frame["ret_24"].to_numpy().reshape(-1, 3)  # one row per ts: BTC, ETH, ZED
    rank = frame["xs_rank_ret_24"].to_numpy().reshape(-1, 3)
    rows = np.flatnonzero(np.isfinite(ret_24).all(axis=1))[:500]
    assert rows.size == 500
    expected = np.argsort(np.argsort(ret_24[rows], axis=1), axis=1) / 2.0  # 0, 0.5, 1 for three symbols
    np.testing.assert_array_equal(rank[rows], expected)
    assert np.isnan(rank[: rows[0]]).all()  # null (NaN here) while the source warms up


def test_warmup_is_what_each_memory_says(three: pl.DataFrame) -> None:
    frame = compute_features(three.filter(pl.col("symbol") == "ETH"), CANDIDATE_FEATURES, by=None)
    for spec in CANDIDATE_FEATURES:
        first = int(frame[spec.name].is_not_null().arg_max() or 0)
        assert first == spec.warmup, spec.name


def test_the_last_bar_on_a_window_of_exact_bars_equals_the_full_history(three: pl.DataFrame) -> None:
    """What the live engine computes on its rolling window of every symbol at once."""
    full = compute_features(three, CANDIDATE_FEATURES)
    window = max(spec.exact_bars() for spec in CANDIDATE_FEATURES)
    times = three["ts"].unique().sort().to_list()
    for t in times[-40:]:
        part = three.filter(pl.col("ts") <= t).group_by("symbol", maintain_order=True).tail(window)
        rolled = compute_features(part, CANDIDATE_FEATURES).filter(pl.col("ts") == t).sort("symbol")
        expected = full.filter(pl.col("ts") == t).sort("symbol")
        np.testing.assert_allclose(rolled.select(NAMES).to_numpy(), expected.select(NAMES).to_numpy(), rtol=1e-12)
    # one bar fewer and the longest features are missing at the last bar, never silently different
    short = compute_features(three.group_by("symbol", maintain_order=True).tail(window - 1), CANDIDATE_FEATURES)
    last = short.filter(pl.col("ts") == times[-1])
    assert window == 73 and last["vol_72"].null_count() == last["ret_72"].null_count() == 3


def test_a_model_on_candidates_decides_on_its_window_as_on_the_full_history(three: pl.DataFrame) -> None:
    strategy, barriers = SmaCross(fast=10, slow=40), BarrierConfig()
    times = three["ts"].unique().sort()
    start = int(times[-150])
    events = meta_dataset(
        three.filter(pl.col("ts") < start), strategy, barriers=barriers, features=CANDIDATE_META_FEATURES
    )
    model = fit_threshold(
        events.filter(pl.col("t1") < start),
        strategy,
        barriers,
        estimator_params={"model": "hgb", "max_features": 6},
        features=CANDIDATE_META_FEATURES,
    )
    assert model.estimator.support_.sum() == 6 and not model.estimator.fallback_
    model.estimator.threshold_ = float(np.median(model.probabilities(events)))  # entries taken and refused
    now = model.trained_until + 1
    full = decide(three, model, now_ms=now).filter(pl.col("ts") >= start)
    fired = full.filter(pl.col("proba").is_not_null())
    assert fired.height >= 3 and fired["signal"].n_unique() == 2
    window = min_window_bars(strategy, model.features)
    for t in fired["ts"].unique().to_list():
        part = three.filter(pl.col("ts") <= t).group_by("symbol", maintain_order=True).tail(window)
        rolled = apply_model(enrich(part, strategy, model.features).filter(pl.col("ts") == t), model, now_ms=now)
        expected = full.filter(pl.col("ts") == t)
        assert rolled.sort("symbol")["signal"].equals(expected.sort("symbol")["signal"])
        np.testing.assert_allclose(
            rolled.sort("symbol")["proba"].fill_null(-1.0).to_numpy(),
            expected.sort("symbol")["proba"].fill_null(-1.0).to_numpy(),
            atol=1e-9,
        )
