"""Candidate features for the threshold model, beside ``DEFAULT_FEATURES``; the model's fit
keeps the most informative of them (``AdaptiveThreshold(max_features=...)``).

Rules:

- Scale-free only (returns, ratios, ranks), so one model serves symbols of any price.
- Multi-horizon returns and volatility (4, 24 and 72 bars: a few hours to three days on 1h
  bars), the volume profile (volume against its 72-bar mean, the share of the last 24 bars'
  volume traded on rising bars, where the close sits in its 24-bar range), and
  cross-sectional ranks across the universe at each bar (24-bar return, 20-bar volatility,
  volume ratio: see ``tradeloop.features.pipeline`` for how they are computed and when live
  and research agree).
- Funding rates of perpetual futures are not among them: the lake holds spot candles only
  (no funding series is stored), so that candidate is skipped until a funding source exists.
- One definition serves research and live: ``meta_dataset`` and ``decide.enrich`` both call
  ``compute_features`` with these specs; each carries its ``Memory`` so the live engine's
  window (``tradeloop.thresholds.warmup``) covers it.
"""

from __future__ import annotations

import polars as pl

from tradeloop.features import indicators as ind
from tradeloop.features.memory import Memory
from tradeloop.features.pipeline import BAR, DEFAULT_FEATURES, PAIR, FeatureSpec, feature_spec

_PERIODS = (4, 24, 72)


def _returns(n: int) -> FeatureSpec:
    return FeatureSpec(f"ret_{n}", lambda: ind.returns(n=n), Memory.bars(n + 1))


def _upvolume_share(n: int) -> pl.Expr:
    up = pl.when(pl.col("close") > pl.col("open")).then(pl.col("volume")).otherwise(0.0)
    return up.rolling_sum(window_size=n) / pl.col("volume").rolling_sum(window_size=n)


def _range_position(n: int) -> pl.Expr:
    low = ind.rolling_low(n)
    return (pl.col("close") - low) / (ind.rolling_high(n) - low)


def cross_sectional(name: str, source: FeatureSpec) -> FeatureSpec:
    """The rank of ``source`` across the symbols at each bar, in [0, 1]."""
    return FeatureSpec(name, source.build, source.memory, source=source)


_PER_SYMBOL: tuple[FeatureSpec, ...] = (
    *(_returns(n) for n in _PERIODS),
    FeatureSpec("vol_72", lambda: ind.volatility(72), PAIR.rolling(72)),
    FeatureSpec("vol_ratio_20_72", lambda: ind.volatility(20) / ind.volatility(72), PAIR.rolling(72)),
    FeatureSpec("volume_ratio_72", lambda: ind.volume_ratio(72), BAR.rolling(72)),
    FeatureSpec("upvolume_share_24", lambda: _upvolume_share(24), BAR.rolling(24)),
    FeatureSpec("range_position_24", lambda: _range_position(24), BAR.rolling(24)),
)

CANDIDATE_FEATURES: tuple[FeatureSpec, ...] = (
    *_PER_SYMBOL,
    cross_sectional("xs_rank_ret_24", feature_spec("ret_24", _PER_SYMBOL)),
    cross_sectional("xs_rank_vol_20", feature_spec("vol_20", DEFAULT_FEATURES)),
    cross_sectional("xs_rank_volume_ratio_20", feature_spec("volume_ratio_20", DEFAULT_FEATURES)),
)

#: every feature a threshold model may read, by name
MODEL_SPECS: tuple[FeatureSpec, ...] = (*DEFAULT_FEATURES, *CANDIDATE_FEATURES)
