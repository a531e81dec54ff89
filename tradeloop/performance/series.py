"""Time series derived from an equity curve, for tables and charts.

Input is a polars frame with a time column, ``ts`` (epoch milliseconds, UTC) or ``time``
(datetime, UTC when naive), and ``equity``. A ``portfolio`` column (one curve per symbol when
cash is not shared) is summed per bar: the total is what the account holds.

Rules, shared with :mod:`tradeloop.performance.metrics`:

* with ``init_cash`` the capital is the first peak and the base of the first return, as in
  :func:`~tradeloop.performance.metrics.compute_metrics`; without it the first equity is;
* drawdown is a negative fraction (-0.25 = 25% below the previous peak);
* a month's return runs from the last equity of the previous month (or the capital) to the
  last equity of the month; months are UTC calendar months;
* a chart draws a long line through :func:`thin_indices` (the extremes of short runs of
  bars), so a million 1m bars make a figure of thousands of points with the same shape.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError
from tradeloop.performance.metrics import drawdown_series, rolling_sharpe

DAY_MS = 86_400_000


def equity_frame(frame: pl.DataFrame, *, what: str = "equity") -> pl.DataFrame:
    """``time`` (naive UTC datetime, ms) and ``equity``, one row per bar, sorted; portfolios summed."""
    if "equity" not in frame.columns or not ({"ts", "time"} & set(frame.columns)):
        raise ConfigError(
            f"{what} has columns {frame.columns}; it needs 'equity' and a time column, 'ts' (epoch ms, UTC) "
            "or 'time' (datetime), e.g. BacktestResult.equity"
        )
    out = frame.select(time=to_datetime(frame), equity=pl.col("equity").cast(pl.Float64))
    if "portfolio" in frame.columns and frame["portfolio"].n_unique() > 1:
        out = out.group_by("time").agg(pl.col("equity").sum())
    return out.sort("time")


def to_datetime(frame: pl.DataFrame, column: str = "ts") -> pl.Expr:
    """Expression for the frame's times as naive UTC datetimes (``ts`` ms, or an existing ``time``)."""
    if column in frame.columns and frame.schema[column].is_integer():
        return pl.from_epoch(pl.col(column), time_unit="ms")
    time = column if column in frame.columns else "time"
    dtype = frame.schema[time]
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        return pl.col(time).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.cast_time_unit("ms")
    return pl.col(time).cast(pl.Datetime("ms"))


def _with_start(equity: np.ndarray, init_cash: float | None) -> np.ndarray:
    return equity if init_cash is None else np.concatenate([[float(init_cash)], equity])


def drawdown_frame(equity: pl.DataFrame, *, init_cash: float | None = None) -> pl.DataFrame:
    """``time`` and ``drawdown`` (negative fraction) per bar."""
    eq = equity_frame(equity)
    dd = drawdown_series(_with_start(eq["equity"].to_numpy(), init_cash))
    return eq.select("time").with_columns(drawdown=pl.Series(dd[-eq.height :] if eq.height else dd[:0]))


def bar_returns(equity: pl.DataFrame, *, init_cash: float | None = None) -> pl.DataFrame:
    """``time`` and simple ``return`` per bar (the first bar's from the capital when given)."""
    eq = equity_frame(equity)
    curve = _with_start(eq["equity"].to_numpy(), init_cash)
    returns = curve[1:] / curve[:-1] - 1.0 if curve.size > 1 else np.empty(0)
    times = eq["time"] if init_cash is not None else eq["time"].slice(1)
    return pl.DataFrame({"time": times, "return": returns})


def monthly_returns(equity: pl.DataFrame, *, init_cash: float | None = None) -> pl.DataFrame:
    """``year``, ``month`` (1-12) and ``return`` of each calendar month the curve touches."""
    eq = equity_frame(equity)
    last = (
        eq.group_by(year=pl.col("time").dt.year(), month=pl.col("time").dt.month())
        .agg(pl.col("equity").last())
        .sort("year", "month")
    )
    start = float(init_cash) if init_cash is not None else (float(eq["equity"][0]) if eq.height else np.nan)
    previous = pl.col("equity").shift(1).fill_null(start)
    return last.select("year", "month", (pl.col("equity") / previous - 1.0).alias("return"))


def bars_per_day(timeframe: str) -> float:
    return DAY_MS / timeframe_ms(timeframe)


def rolling_sharpe_frame(
    equity: pl.DataFrame, *, timeframe: str, window_days: float = 90, init_cash: float | None = None
) -> pl.DataFrame:
    """``time`` and ``sharpe``: annualised (365 days) Sharpe over the trailing ``window_days``."""
    if window_days <= 0:
        raise ConfigError(f"window_days={window_days} must be positive, e.g. 90")
    returns = bar_returns(equity, init_cash=init_cash)
    window = max(2, round(window_days * bars_per_day(timeframe)))
    sharpe = rolling_sharpe(returns["return"].to_numpy(), window, 365 * bars_per_day(timeframe))
    return returns.select("time").with_columns(sharpe=pl.Series(sharpe, dtype=pl.Float64))


def thin_indices(values: np.ndarray, max_points: int | None) -> np.ndarray:
    """Sorted indices of at most ``max_points`` points that draw the same line at screen size:
    the first and the last, and the lowest and the highest of each of ``(max_points - 2) // 2``
    equal runs of points (a run of NaN keeps its first point, so gaps stay gaps). ``None``: all."""
    if max_points is not None and max_points < 4:
        raise ConfigError(f"max_points={max_points} cannot draw a line; use at least 4 (e.g. 5000), or None for all")
    values = np.asarray(values, dtype=np.float64)
    n = values.size
    if max_points is None or n <= max_points:
        return np.arange(n)
    runs = (max_points - 2) // 2
    size = math.ceil(n / runs)
    grid = np.full(runs * size, np.nan)
    grid[:n] = values
    blocks = grid.reshape(runs, size)
    missing = np.isnan(blocks)
    starts = np.arange(runs) * size
    low = starts + np.where(missing, np.inf, blocks).argmin(axis=1)  # all-NaN run: its first point
    high = starts + np.where(missing, -np.inf, blocks).argmax(axis=1)
    picked = np.unique(np.concatenate([[0, n - 1], low, high]))
    return picked[picked < n]
