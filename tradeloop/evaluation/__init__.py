"""Evaluation: leakage-free walk-forward splits and overfitting statistics."""

from tradeloop.evaluation.overfitting import (
    deflated_sharpe,
    expected_max_sharpe,
    probabilistic_sharpe,
    probability_of_backtest_overfitting,
    sharpe_per_period,
)
from tradeloop.evaluation.splits import Fold, PurgedWalkForward

__all__ = [
    "Fold",
    "PurgedWalkForward",
    "deflated_sharpe",
    "expected_max_sharpe",
    "probabilistic_sharpe",
    "probability_of_backtest_overfitting",
    "sharpe_per_period",
]
