"""Permutation importance, out of sample: the feature that decides the outcome ranks first."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.research.importance import holdout_importance
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import META_FEATURES, BarrierConfig


def synthetic(n: int = 900, seed: int = 1) -> pl.DataFrame:
    """Events whose outcome follows ``rsi_14`` (the third feature); the others are noise."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(META_FEATURES)))
    win = rng.random(n) < 1.0 / (1.0 + np.exp(-2.5 * X[:, 2]))
    ret = np.where(win, 0.02, -0.01)
    ts = np.arange(n, dtype=np.int64) * 3_600_000 + 1_600_000_000_000
    return pl.DataFrame(
        {"ts": ts, "t1": ts + 5 * 3_600_000, **dict(zip(META_FEATURES, X.T, strict=True))}
    ).with_columns(ret=pl.Series(ret), label=pl.Series((ret - 0.002 > 0).astype(np.int8)))


@pytest.mark.parametrize("params", [{"model": "logistic", "max_features": None}, {"model": "hgb", "max_features": 3}])
def test_the_feature_that_decides_ranks_first_out_of_sample(params: dict) -> None:
    table = holdout_importance(
        synthetic(), SmaCross(), BarrierConfig(), features=META_FEATURES, estimator_params=params, n_repeats=3
    )
    assert table["feature"][0] == "rsi_14" and table["importance"][0] > 0.02
    assert table["importance"][1:].abs().max() < 0.01  # noise matters little, or not at all
    assert table.filter(pl.col("feature") == "rsi_14")["selected"].item()
    assert table["selected"].sum() == (3 if params["max_features"] else len(META_FEATURES))


def test_too_few_events_say_so() -> None:
    with pytest.raises(ConfigError, match="too few for permutation importance"):
        holdout_importance(synthetic(n=40), SmaCross(), BarrierConfig(), features=META_FEATURES)
