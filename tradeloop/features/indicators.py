"""Indicator expressions. Each function returns a ``pl.Expr`` over candle columns.

Every expression is causal: row ``t`` depends on rows ``<= t`` only. Rolling windows
yield null until they are full (the warm-up). Exponential ones (EMA, RSI, ATR) use
``adjust=False`` recursions seeded at the first row; they are causal too, but depend on
where the history starts, so strategies meant for rolling-window evaluation in the live
engine prefer the finite-window ones (SMA, rolling std, channels).
"""

from __future__ import annotations

import polars as pl


def _c(name: str | pl.Expr) -> pl.Expr:
    return pl.col(name) if isinstance(name, str) else name


def returns(col: str = "close", n: int = 1) -> pl.Expr:
    return _c(col) / _c(col).shift(n) - 1.0


def log_returns(col: str = "close", n: int = 1) -> pl.Expr:
    return (_c(col) / _c(col).shift(n)).log()


def sma(n: int, col: str | pl.Expr = "close") -> pl.Expr:
    return _c(col).rolling_mean(window_size=n)


def ema(n: int, col: str | pl.Expr = "close") -> pl.Expr:
    return _c(col).ewm_mean(span=n, adjust=False, min_samples=n)


def rolling_std(n: int, col: str | pl.Expr = "close") -> pl.Expr:
    return _c(col).rolling_std(window_size=n)


def volatility(n: int, col: str = "close") -> pl.Expr:
    """Rolling standard deviation of log returns over ``n`` bars (per bar, not annualised)."""
    return log_returns(col).rolling_std(window_size=n)


FLAT = 1e-6  # a rolling std at most this fraction of the mean's size is rounding: the series is flat


def zscore(n: int, col: str | pl.Expr = "close") -> pl.Expr:
    """How many rolling standard deviations the value lies from its rolling mean; 0 where the
    last ``n`` values are flat. A flat window's std is the rounding left in polars' running
    sums (0, a tiny number or NaN, depending on what came before), so the plain ratio would be
    0/0 or +-inf at random: flat is defined as a std within ``FLAT`` of the mean's size."""
    mean, std = sma(n, col), rolling_std(n, col)
    flat = (std <= FLAT * mean.abs()) | std.is_nan()
    return pl.when(flat).then(0.0).otherwise((_c(col) - mean) / std)


def true_range() -> pl.Expr:
    prev_close = pl.col("close").shift(1)
    return pl.max_horizontal(
        pl.col("high") - pl.col("low"),
        (pl.col("high") - prev_close).abs(),
        (pl.col("low") - prev_close).abs(),
    )


def atr(n: int) -> pl.Expr:
    """Average true range with Wilder's smoothing (alpha = 1/n)."""
    return true_range().ewm_mean(alpha=1.0 / n, adjust=False, min_samples=n)


def rsi(n: int = 14, col: str = "close") -> pl.Expr:
    """Wilder's relative strength index in [0, 100]."""
    delta = _c(col).diff()
    gain = delta.clip(lower_bound=0.0).ewm_mean(alpha=1.0 / n, adjust=False, min_samples=n)
    loss = (-delta).clip(lower_bound=0.0).ewm_mean(alpha=1.0 / n, adjust=False, min_samples=n)
    return pl.when(loss == 0).then(100.0).otherwise(100.0 - 100.0 / (1.0 + gain / loss))


def rolling_high(n: int, col: str = "high") -> pl.Expr:
    return _c(col).rolling_max(window_size=n)


def rolling_low(n: int, col: str = "low") -> pl.Expr:
    return _c(col).rolling_min(window_size=n)


def volume_ratio(n: int) -> pl.Expr:
    """Volume relative to its ``n``-bar mean (1.0 = average)."""
    return pl.col("volume") / sma(n, "volume")


def volume_zscore(n: int) -> pl.Expr:
    return zscore(n, "volume")


def dollar_volume() -> pl.Expr:
    return pl.col("close") * pl.col("volume")
