"""Performance of backtests and live sessions: metrics (365-day annualisation), a buy-and-hold
benchmark, ``stats()`` tables, plotly figures (``tradeloop.performance.plots``, imported on
use) and the HTML tearsheet (``tradeloop.performance.tearsheet``)."""

from tradeloop.performance.benchmark import buy_and_hold, result_benchmark
from tradeloop.performance.metrics import PerformanceReport, compute_metrics, equity_returns
from tradeloop.performance.report import result_metrics
from tradeloop.performance.stats import Stats, result_stats

__all__ = [
    "PerformanceReport",
    "Stats",
    "buy_and_hold",
    "compute_metrics",
    "equity_returns",
    "result_benchmark",
    "result_metrics",
    "result_stats",
]
