"""Metrics of a :class:`BacktestResult`, one row per portfolio."""

from __future__ import annotations

import polars as pl

from tradeloop.backtest.engine import BacktestResult, periods_per_year
from tradeloop.performance.metrics import compute_metrics


def result_metrics(result: BacktestResult) -> pl.DataFrame:
    """One row of metrics per portfolio (one in total with shared cash, else per symbol)."""
    rows = []
    ppy = periods_per_year(result.timeframe)
    portfolios = result.equity["portfolio"].unique(maintain_order=True).to_list()
    for g, name in enumerate(portfolios):
        equity = result.equity.filter(pl.col("portfolio") == name)["equity"].to_numpy()
        trades = result.trades if len(portfolios) == 1 else result.trades.filter(pl.col("symbol") == name)
        report = compute_metrics(
            equity,
            init_cash=result.config.init_cash,
            periods_per_year=ppy,
            trades=trades,
            bars_in_market=int(result.bars_in_market[g]),
            traded_notional=float(result.traded_notional[g]),
        )
        rows.append({"portfolio": name, **report.as_dict()})
    return pl.DataFrame(rows)
