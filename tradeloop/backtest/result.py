"""The backtest's result: the kernel's arrays assembled into tables (polars), and the reports on them.

:func:`backtest_result` turns ``simulate_arrays``' raw tuple into a :class:`BacktestResult`: the
equity curve (``ts, portfolio, equity``; one portfolio named ``"portfolio"`` with
``cash_sharing``, else one per symbol), the trade ledger (:func:`trades_frame`), the risk
engine's denials and kill-switch trips (``tradeloop.backtest.guard``). The report methods load
``tradeloop.performance`` (and plotly) on first use, so ``import tradeloop`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from tradeloop.backtest import guard, kernel
from tradeloop.backtest.config import BacktestConfig
from tradeloop.backtest.prices import PriceArrays
from tradeloop.risk import RiskConfig

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from tradeloop.performance.stats import Stats

__all__ = ["BacktestResult", "backtest_result", "trades_frame"]


@dataclass(frozen=True)
class BacktestResult:
    """Equity curve and trade ledger of one backtest (deterministic for equal inputs)."""

    config: BacktestConfig
    timeframe: str
    symbols: tuple[str, ...]
    equity: pl.DataFrame  # ts, portfolio, equity
    trades: pl.DataFrame  # one row per trade, open ones flagged
    bars_in_market: np.ndarray
    traded_notional: np.ndarray
    extra: dict = field(default_factory=dict)
    prices: PriceArrays | None = None  # the bars simulated: the benchmark and the price charts read them
    strategy: str | None = None  # Strategy.describe(), e.g. "sma_cross(10,30)"
    risk: RiskConfig | None = None  # the risk engine applied (None: none)
    # what the risk engine refused: ts, portfolio, symbol, kind, rule, limit, value (one row per denied intent)
    risk_denials: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=guard.DENIALS_SCHEMA))
    # when each portfolio's kill switch tripped: ts, portfolio, rule, equity, reference, value, limit
    kill_switch_trips: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=guard.TRIPS_SCHEMA))

    @property
    def final_equity(self) -> float:
        last = self.equity.group_by("portfolio").agg(pl.col("equity").last())
        return float(last["equity"].sum())

    # ------------------------------------------------ reports (tradeloop.performance; plotly imported lazily)
    def candles(self, symbol: str | None = None) -> pl.DataFrame:
        """The simulated bars as ``ts, symbol, open, high, low, close`` (one symbol, or all), gaps dropped."""
        from tradeloop.performance.stats import result_candles

        return result_candles(self, symbol)

    def benchmark(self) -> pl.DataFrame:
        """Equal-weight buy and hold of the same symbols and bars (``ts, portfolio, equity``)."""
        from tradeloop.performance.benchmark import result_benchmark

        return result_benchmark(self)

    def stats(self, *, min_days: float = 30.0) -> Stats:
        """One readable table: period, exposure, trades, returns, risk (beside buy and hold), per symbol.

        Annualised figures of a period shorter than ``min_days`` show a caveat instead of a number.
        """
        from tradeloop.performance.stats import result_stats

        return result_stats(self, min_days=min_days)

    def plot_equity(
        self,
        *,
        benchmark: bool = True,
        log_scale: bool = False,
        title: str | None = None,
        max_points: int | None = 5000,
    ) -> go.Figure:
        """Equity over drawdown (plotly figure), with buy and hold unless ``benchmark=False``; lines
        longer than ``max_points`` keep the extremes of short runs of bars (``None``: every bar)."""
        from tradeloop.performance.plots import equity_figure

        return equity_figure(
            self.equity,
            benchmark=self.benchmark() if benchmark else None,
            log_scale=log_scale,
            title=title or self.strategy,
            init_cash=self.capital,
            max_points=max_points,
        )

    def plot_candles(
        self,
        symbol: str | None = None,
        *,
        title: str | None = None,
        max_candles: int | None = 5000,
        max_markers: int | None = 5000,
    ) -> go.Figure:
        """Candlesticks of ``symbol`` (default: the first) with this backtest's entries and exits
        (every n-th trade above ``max_markers``, as the title says)."""
        from tradeloop.performance.plots import candles_figure

        symbol = symbol or self.symbols[0]
        return candles_figure(
            self.candles(symbol),
            trades=self.trades,
            symbol=symbol,
            title=title,
            max_candles=max_candles,
            max_markers=max_markers,
        )

    def plot_monthly_returns(self, *, title: str | None = None) -> go.Figure:
        """Heatmap of calendar-month returns (years x months, in %)."""
        from tradeloop.performance.plots import monthly_returns_figure

        return monthly_returns_figure(self.equity, init_cash=self.capital, title=title)

    def plot_rolling_sharpe(
        self,
        *,
        window_days: float = 90,
        benchmark: bool = True,
        title: str | None = None,
        max_points: int | None = 5000,
    ) -> go.Figure:
        """Sharpe ratio over a trailing window of ``window_days``, beside buy and hold's (thinned as
        :meth:`plot_equity`)."""
        from tradeloop.performance.plots import rolling_sharpe_figure

        return rolling_sharpe_figure(
            self.equity,
            timeframe=self.timeframe,
            window_days=window_days,
            benchmark=self.benchmark() if benchmark else None,
            init_cash=self.capital,
            title=title,
            max_points=max_points,
        )

    def write_report(self, path: str | Path, *, title: str | None = None) -> Path:
        """Write a self-contained HTML tearsheet (plotly embedded, no network needed) to ``path``."""
        from tradeloop.performance.tearsheet import write_tearsheet

        return write_tearsheet(self, path, title=title)

    @property
    def capital(self) -> float:
        """The starting capital of the whole account: ``init_cash`` per portfolio."""
        return float(self.config.init_cash) * (1 if self.config.cash_sharing else len(self.symbols))


def backtest_result(
    raw: tuple, prices: PriceArrays, config: BacktestConfig, *, timeframe: str, risk: RiskConfig | None
) -> BacktestResult:
    """The result of ``simulate_arrays``' ``raw`` tuple over ``prices`` (``risk``: what it applied)."""
    equity, trades, _cash, in_market, notional, denials, trips = raw
    portfolios = ["portfolio"] if config.cash_sharing else list(prices.symbols)
    # the portfolio names by code, not a list of one string per row (100k bars: tens of ms)
    codes = np.tile(np.arange(len(portfolios), dtype=np.uint32), len(prices.ts))
    equity_frame = pl.DataFrame(
        {
            "ts": np.repeat(prices.ts, len(portfolios)),
            "portfolio": pl.Series("portfolio", portfolios, dtype=pl.String).gather(codes),
            "equity": equity.reshape(-1),
        }
    )
    return BacktestResult(
        config=config,
        timeframe=timeframe,
        symbols=prices.symbols,
        equity=equity_frame,
        trades=trades_frame(trades, prices),
        bars_in_market=in_market,
        traded_notional=notional,
        prices=prices,
        risk=risk if guard.active(risk) else None,
        risk_denials=guard.denials_frame(denials, prices.ts, prices.symbols, portfolios),
        kill_switch_trips=guard.trips_frame(trips, prices.ts, portfolios),
    )


def trades_frame(trades: np.ndarray, prices: PriceArrays) -> pl.DataFrame:
    """The kernel's trade matrix as the ledger: one row per trade, by entry time then symbol, open ones flagged."""
    k = kernel
    idx_entry = trades[:, k.T_ENTRY_BAR].astype(np.int64)
    idx_exit = trades[:, k.T_EXIT_BAR].astype(np.int64)
    reasons = np.array(k.EXIT_REASONS)[trades[:, k.T_REASON].astype(np.int64)]
    frame = pl.DataFrame(
        {
            "symbol": np.array(prices.symbols, dtype=object)[trades[:, k.T_SYMBOL].astype(np.int64)].astype(str)
            if len(trades)
            else np.array([], dtype=str),
            "side": np.where(trades[:, k.T_DIRECTION] > 0, "long", "short"),
            "entry_ts": prices.ts[idx_entry],
            "exit_ts": prices.ts[idx_exit],
            "qty": trades[:, k.T_QTY],
            "entry_price": trades[:, k.T_ENTRY_PRICE],
            "exit_price": trades[:, k.T_EXIT_PRICE],
            "fees": trades[:, k.T_FEES],
            "pnl": trades[:, k.T_PNL],
            "return": trades[:, k.T_RETURN],
            "exit_reason": reasons,
            "bars_held": idx_exit - idx_entry,
        }
    )
    return frame.with_columns(is_open=pl.col("exit_reason") == "open").sort("entry_ts", "symbol")
