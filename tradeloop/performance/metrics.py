"""Performance metrics of an equity curve and a trade ledger.

Conventions (crypto trades every day, so annualise with 365 days by default):

* returns are simple per-bar returns of the equity curve, the first one measured from the
  initial capital; ``periods_per_year`` is bars per year (8,760 for 1h candles);
* volatility and Sharpe use the sample standard deviation (ddof = 1), risk-free rate 0;
* Sortino uses the root-mean-square of negative returns (target 0) as downside risk;
* CAGR = (1 + total return) ** (1 / years) - 1 with years = bars / periods_per_year;
* drawdowns count the initial capital as the first peak; the drawdown duration is the
  longest run of bars spent below a previous peak;
* trade statistics (win rate, profit factor, expectancy) use closed trades only.

These match empyrical's definitions (checked in tests/performance to 1e-9).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl

from tradeloop.errors import ConfigError


@dataclass(frozen=True, slots=True)
class PerformanceReport:
    """Every metric of one equity curve (NaN where undefined, e.g. no trades)."""

    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_days: float
    trades: int
    open_trades: int
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_trade_return: float
    exposure: float
    turnover: float  # traded notional / mean equity, per year
    final_equity: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def equity_returns(equity: np.ndarray, init_cash: float) -> np.ndarray:
    curve = np.concatenate([[init_cash], np.asarray(equity, dtype=np.float64)])
    return curve[1:] / curve[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    if returns.size < 2:
        return math.nan
    return sharpe_from_moments(float(np.mean(returns)), float(np.std(returns, ddof=1)), returns.size, periods_per_year)


def sharpe_from_moments(mean: float, sd: float, count: int, periods_per_year: float) -> float:
    """:func:`sharpe_ratio` from the mean and sample standard deviation (ddof = 1) of ``count``
    returns, for callers that never hold the returns (``tradeloop.backtest.sweep``)."""
    if count < 2:
        return math.nan
    return float(mean / sd * math.sqrt(periods_per_year)) if sd > 0 else math.nan


def sortino_ratio(returns: np.ndarray, periods_per_year: float) -> float:
    if returns.size < 2:
        return math.nan
    downside = math.sqrt(float(np.mean(np.square(np.minimum(returns, 0.0))))) * math.sqrt(periods_per_year)
    return float(np.mean(returns) * periods_per_year / downside) if downside > 0 else math.nan


def annual_volatility(returns: np.ndarray, periods_per_year: float) -> float:
    return float(np.std(returns, ddof=1) * math.sqrt(periods_per_year)) if returns.size > 1 else math.nan


def cagr(returns: np.ndarray, periods_per_year: float) -> float:
    if returns.size == 0:
        return math.nan
    growth = float(np.prod(1.0 + returns))
    years = returns.size / periods_per_year
    return growth ** (1.0 / years) - 1.0 if growth > 0 else -1.0


def drawdown_series(equity_with_start: np.ndarray) -> np.ndarray:
    """Drawdown at each point as a negative fraction (0 at a new peak); the first point is a peak."""
    curve = np.asarray(equity_with_start, dtype=np.float64)
    return curve / np.maximum.accumulate(curve) - 1.0


def rolling_sharpe(returns: np.ndarray, window: int, periods_per_year: float) -> np.ndarray:
    """Sharpe ratio (as :func:`sharpe_ratio`) over each trailing ``window`` of returns; NaN before it fills."""
    if window < 2:
        raise ConfigError(f"window={window} bars is too short for a Sharpe ratio; use at least 2")
    frame = pl.DataFrame({"r": np.asarray(returns, dtype=np.float64)})
    stats = frame.select(mean=pl.col("r").rolling_mean(window), sd=pl.col("r").rolling_std(window, ddof=1))
    mean, sd = stats["mean"].to_numpy(), stats["sd"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mean / sd * math.sqrt(periods_per_year)
    return np.where(sd > 0, out, np.nan)


def drawdown(equity_with_start: np.ndarray) -> tuple[float, int]:
    """(max drawdown as a negative fraction, longest underwater run in bars)."""
    dd = drawdown_series(equity_with_start)
    underwater = dd < 0
    longest = run = 0
    for flag in underwater:  # numpy has no run-length primitive; curves are modest in size
        run = run + 1 if flag else 0
        longest = max(longest, run)
    return float(dd.min()), int(longest)


def trade_stats(trades: pl.DataFrame) -> dict[str, float]:
    closed = trades.filter(~pl.col("is_open")) if trades.height else trades
    if closed.height == 0:
        return {"win_rate": math.nan, "profit_factor": math.nan, "expectancy": math.nan, "avg_trade_return": math.nan}
    pnl = closed["pnl"].to_numpy()
    gains = float(pnl[pnl > 0].sum())
    losses = float(-pnl[pnl < 0].sum())
    return {
        "win_rate": float((pnl > 0).mean()),
        "profit_factor": gains / losses if losses > 0 else math.inf,
        "expectancy": float(pnl.mean()),
        "avg_trade_return": float(closed["return"].to_numpy().mean()),
    }


def compute_metrics(
    equity: np.ndarray,
    *,
    init_cash: float,
    periods_per_year: float,
    trades: pl.DataFrame | None = None,
    bars_in_market: int | None = None,
    traded_notional: float | None = None,
) -> PerformanceReport:
    """All metrics of one equity curve (one value per bar, after each bar's close)."""
    if periods_per_year <= 0:
        raise ConfigError(f"periods_per_year={periods_per_year} must be positive (8760 for 1h bars)")
    equity = np.asarray(equity, dtype=np.float64)
    returns = equity_returns(equity, init_cash)
    max_dd, dd_bars = drawdown(np.concatenate([[init_cash], equity]))
    growth = cagr(returns, periods_per_year)
    years = max(equity.size, 1) / periods_per_year
    trades = trades if trades is not None else pl.DataFrame({"pnl": [], "return": [], "is_open": []})
    stats = trade_stats(trades)
    mean_equity = float(equity.mean()) if equity.size else math.nan
    return PerformanceReport(
        total_return=float(equity[-1] / init_cash - 1.0) if equity.size else math.nan,
        cagr=growth,
        volatility=annual_volatility(returns, periods_per_year),
        sharpe=sharpe_ratio(returns, periods_per_year),
        sortino=sortino_ratio(returns, periods_per_year),
        calmar=growth / abs(max_dd) if max_dd < 0 else math.nan,
        max_drawdown=max_dd,
        max_drawdown_bars=dd_bars,
        max_drawdown_days=dd_bars * 365.0 / periods_per_year,
        trades=trades.height,
        open_trades=int(trades["is_open"].sum()) if trades.height else 0,
        exposure=(bars_in_market / equity.size) if bars_in_market is not None and equity.size else math.nan,
        turnover=(traded_notional / mean_equity / years) if traded_notional is not None and mean_equity else math.nan,
        final_equity=float(equity[-1]) if equity.size else math.nan,
        **stats,
    )
