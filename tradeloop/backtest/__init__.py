"""Multi-symbol portfolio backtests with a compiled (numba) hot loop.

The per-position rules the live engine reproduces are exported too: stop levels and exits
(``stop_levels``, ``stop_exit``, ``next_extreme``), limit entries (``limit_price``,
``limit_fill_price``) and Wilder's ATR (``wilder_atr`` over arrays, ``WilderAtr`` candle by
candle). ``run_backtest(..., risk=RiskConfig(...))`` applies the risk engine inside the
kernel as the live engine does (``tradeloop.backtest.kernel_risk``); its denials and kill-switch
trips come back with the result.
``sweep(strategy, params, candles, config, timeframe=...)`` runs many parameter sets x many
symbols in one compiled parallel pass (``tradeloop.backtest.sweep``), one row of metrics each.
"""

from tradeloop.backtest.atr import WilderAtr, wilder_atr
from tradeloop.backtest.config import BacktestConfig
from tradeloop.backtest.engine import (
    backtest_strategy,
    periods_per_year,
    run_backtest,
    simulate_arrays,
    size_fractions,
    vol_target_fractions,
)
from tradeloop.backtest.fills import (
    StopLevels,
    limit_fill_price,
    limit_price,
    next_extreme,
    stop_exit,
    stop_levels,
)
from tradeloop.backtest.prices import PriceArrays
from tradeloop.backtest.result import BacktestResult
from tradeloop.backtest.sweep import sweep

__all__ = [
    "BacktestConfig",
    "BacktestResult",
    "PriceArrays",
    "StopLevels",
    "WilderAtr",
    "backtest_strategy",
    "limit_fill_price",
    "limit_price",
    "next_extreme",
    "periods_per_year",
    "run_backtest",
    "simulate_arrays",
    "stop_exit",
    "stop_levels",
    "sweep",
    "size_fractions",
    "vol_target_fractions",
    "wilder_atr",
]
