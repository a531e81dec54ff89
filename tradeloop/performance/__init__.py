"""Performance metrics (365-day annualisation) for backtests and live sessions."""

from tradeloop.performance.metrics import PerformanceReport, compute_metrics, equity_returns
from tradeloop.performance.report import result_metrics

__all__ = ["PerformanceReport", "compute_metrics", "equity_returns", "result_metrics"]
