"""Multi-symbol portfolio backtests with a compiled (numba) hot loop."""

from tradeloop.backtest.config import BacktestConfig
from tradeloop.backtest.engine import (
    BacktestResult,
    PriceArrays,
    backtest_strategy,
    periods_per_year,
    run_backtest,
    simulate_arrays,
)

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "PriceArrays",
    "backtest_strategy",
    "periods_per_year",
    "run_backtest",
    "simulate_arrays",
]
