"""Evaluate named feature expressions per symbol on a long candle frame.

Each feature carries a :class:`~tradeloop.features.memory.Memory`: how far back its
expression reaches, written next to it. Its warm-up (null bars) and the bars a rolling window
needs to give the full-history value (``FeatureSpec.exact_bars``) are derived from that, never
written down as constants; ``tests/features/test_memory.py`` holds every description to its
expression on real data.

A cross-sectional feature (``FeatureSpec.source`` set, see ``tradeloop.features.candidates``)
is the rank of its source feature among the symbols of the frame at the same bar, scaled to
[0, 1]. Its source is computed per symbol first (under a hidden name), then ranked per ``ts``;
its memory is its source's, since the rank at bar ``t`` reads every symbol's source at ``t``
only. It ranks across whatever symbols the frame holds: the live engine's window holds its
session's symbols, research the universe's, so they agree when a session trades the model's
whole universe.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import polars as pl

from tradeloop.errors import ConfigError
from tradeloop.features import indicators as ind
from tradeloop.features.memory import TOLERANCE, Memory


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """A named feature: ``build()`` returns the expression, ``memory`` describes how far back
    it reaches (see ``tradeloop.features.memory``)."""

    name: str
    build: Callable[[], pl.Expr]
    memory: Memory
    source: FeatureSpec | None = None  # set: the rank of this per-symbol feature across symbols at each bar

    def expr(self) -> pl.Expr:
        return self.build().alias(self.name)

    @property
    def hidden(self) -> str:
        """The column a cross-sectional feature's source is computed in before it is ranked."""
        return f"__{self.name}__source"

    @property
    def warmup(self) -> int:
        """Leading null bars on a fresh history."""
        return self.memory.warmup

    def exact_bars(self, tol: float = TOLERANCE) -> int:
        """Bars of history on which the last value equals the full-history one within ``tol``."""
        return self.memory.exact_bars(tol)


BAR = Memory.bars(1)  # columns of the bar itself
PAIR = Memory.bars(2)  # the bar and the one before it: returns, diff
TRUE_RANGE = Memory.combine(BAR, PAIR, nulls="all")  # max_horizontal skips the first bar's null prev close


def _wilder(inner: Memory, n: int) -> Memory:
    """Wilder's smoothing as ``indicators`` writes it: alpha = 1/n, null until n values."""
    return inner.ewm(alpha=1.0 / n, min_samples=n)


DEFAULT_FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("ret_1", lambda: ind.returns(), PAIR),
    FeatureSpec("logret_1", lambda: ind.log_returns(), PAIR),
    FeatureSpec("sma_10", lambda: ind.sma(10), BAR.rolling(10)),
    FeatureSpec("sma_30", lambda: ind.sma(30), BAR.rolling(30)),
    FeatureSpec("ema_20", lambda: ind.ema(20), BAR.ewm(span=20, min_samples=20)),
    FeatureSpec("rsi_14", lambda: ind.rsi(14), _wilder(PAIR, 14)),  # gains and losses of close.diff()
    FeatureSpec("atr_14", lambda: ind.atr(14), _wilder(TRUE_RANGE, 14)),
    FeatureSpec("vol_20", lambda: ind.volatility(20), PAIR.rolling(20)),  # rolling std of log returns
    FeatureSpec("zscore_20", lambda: ind.zscore(20), BAR.rolling(20)),
    FeatureSpec("volume_ratio_20", lambda: ind.volume_ratio(20), BAR.rolling(20)),
    FeatureSpec("volume_zscore_20", lambda: ind.volume_zscore(20), BAR.rolling(20)),
    FeatureSpec("dollar_volume", lambda: ind.dollar_volume(), BAR),
)


def feature_spec(name: str, specs: Sequence[FeatureSpec] = DEFAULT_FEATURES) -> FeatureSpec:
    """The spec called ``name``; a ConfigError naming the known ones otherwise."""
    for spec in specs:
        if spec.name == name:
            return spec
    raise ConfigError(f"feature {name!r} is unknown; choose from {[s.name for s in specs]}")


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
    plain = [s.expr() for s in specs if s.source is None]
    cross = [s for s in specs if s.source is not None]
    plain += [s.source.build().alias(s.hidden) for s in cross if s.source is not None]
    out = candles.with_columns([e.over(group) if group else e for e in plain])
    if not cross:
        return out
    return out.with_columns([cross_rank(s.hidden).alias(s.name) for s in cross]).drop([s.hidden for s in cross])


def cross_rank(column: str) -> pl.Expr:
    """The rank of ``column`` among the rows of the same ``ts``, scaled to [0, 1] (0.5 alone);
    null where the value is null."""
    value = pl.col(column)
    rank, count = value.rank("average").over("ts"), value.count().over("ts")
    scaled = pl.when(count > 1).then((rank - 1.0) / (count - 1.0)).otherwise(0.5)
    return pl.when(value.is_null()).then(None).otherwise(scaled)
