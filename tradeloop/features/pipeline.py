"""Evaluate named feature expressions per symbol on a long candle frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from tradeloop.errors import ConfigError
from tradeloop.features import indicators as ind


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A named feature: ``build()`` returns the expression; ``warmup`` bars are null."""

    name: str
    build: Callable[[], pl.Expr]
    warmup: int

    def expr(self) -> pl.Expr:
        return self.build().alias(self.name)


DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("ret_1", lambda: ind.returns(), 1),
    FeatureSpec("logret_1", lambda: ind.log_returns(), 1),
    FeatureSpec("sma_10", lambda: ind.sma(10), 9),
    FeatureSpec("sma_30", lambda: ind.sma(30), 29),
    FeatureSpec("ema_20", lambda: ind.ema(20), 19),
    FeatureSpec("rsi_14", lambda: ind.rsi(14), 14),
    FeatureSpec("atr_14", lambda: ind.atr(14), 13),
    FeatureSpec("vol_20", lambda: ind.volatility(20), 20),
    FeatureSpec("zscore_20", lambda: ind.zscore(20), 19),
    FeatureSpec("volume_ratio_20", lambda: ind.volume_ratio(20), 19),
    FeatureSpec("volume_zscore_20", lambda: ind.volume_zscore(20), 19),
    FeatureSpec("dollar_volume", lambda: ind.dollar_volume(), 0),
)


def compute_features(
    candles: pl.DataFrame,
    specs: Sequence[FeatureSpec] = DEFAULT_FEATURES,
    *,
    by: str | None = "symbol",
) -> pl.DataFrame:
    """Add one column per spec. With ``by`` set, each symbol is computed on its own history.

    Rows must be sorted by ``ts`` within each symbol (the lake returns them so).
    """
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"feature names must be unique; got {names}")
    clash = sorted(set(names) & set(candles.columns))
    if clash:
        raise ConfigError(f"feature name(s) {clash} already are columns of the frame; rename them")
    group = by if by is not None and by in candles.columns else None
    exprs = [s.expr().over(group) if group else s.expr() for s in specs]
    return candles.with_columns(exprs)
