"""Walk-forward evaluation of one configuration: train the threshold on each fold's purged
past, trade the fold's test period with it, and collect out-of-sample bar returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.data.schema import timeframe_ms
from tradeloop.evaluation import PurgedWalkForward
from tradeloop.evaluation.overfitting import sharpe_per_period
from tradeloop.strategies import Strategy
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel, meta_dataset
from tradeloop.thresholds.decide import decide

FEATURE_WARMUP_BARS = 40  # longest DEFAULT_FEATURES window + margin


@dataclass(frozen=True)
class FoldResult:
    index: int
    test_start: int
    test_end: int
    train_events: int
    test_trades: int
    sharpe: float  # per bar
    max_drawdown: float


@dataclass(frozen=True)
class WalkForwardResult:
    folds: tuple[FoldResult, ...]
    ts: np.ndarray  # out-of-sample bar times, every fold's test period in order
    returns: np.ndarray  # portfolio return per out-of-sample bar
    events: int

    @property
    def sharpe(self) -> float:
        return sharpe_per_period(self.returns)

    @property
    def max_drawdown(self) -> float:
        return max_drawdown_of(self.returns)


def max_drawdown_of(returns: np.ndarray) -> float:
    if returns.size == 0:
        return 0.0
    curve = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:]
    return float(np.max(1.0 - curve / peak))


def fit_threshold(events: pl.DataFrame, strategy: Strategy, barriers: BarrierConfig, *,
                  estimator_params: dict | None = None) -> ThresholdModel:
    """Train the adaptive threshold on labelled events (time-ordered) of one configuration."""
    est = AdaptiveThreshold(cost=barriers.cost, **(estimator_params or {})).fit(
        events.select(META_FEATURES).to_numpy(), events["label"].to_numpy(), returns=events["ret"].to_numpy(),
        ts=events["ts"].to_numpy(), t1=events["t1"].to_numpy())
    until = int(events["t1"].max()) if events.height else 0
    return ThresholdModel(strategy=strategy, barriers=barriers, estimator=est, trained_until=until)


def trade_window(candles: pl.DataFrame, model: ThresholdModel, *, start: int, end: int, timeframe: str,
                 backtest: BacktestConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Backtest the model on [start, end] (warm-up bars before ``start`` feed features only).

    Returns (bar ts, bar returns, number of trades)."""
    warm = (max(model.strategy.warmup_bars, FEATURE_WARMUP_BARS) + 2) * timeframe_ms(timeframe)
    window = candles.filter(pl.col("ts").is_between(start - warm, end))
    decided = decide(window, model, now_ms=start).filter(pl.col("ts") >= start)
    result = run_backtest(decided, backtest, timeframe=timeframe)
    equity = result.equity.group_by("ts", maintain_order=True).agg(pl.col("equity").sum())
    values = equity["equity"].to_numpy()
    base = backtest.init_cash * (1 if backtest.cash_sharing else len(result.symbols))
    returns = np.diff(values, prepend=base) / np.concatenate([[base], values[:-1]])
    return equity["ts"].to_numpy(), returns, result.trades.height


def walk_forward(
    candles: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    timeframe: str,
    splitter: PurgedWalkForward,
    backtest: BacktestConfig,
    estimator_params: dict | None = None,
    on_fold: Callable[[int, float], None] | None = None,
) -> WalkForwardResult:
    """Evaluate one configuration; ``on_fold(index, running_sharpe)`` may raise to stop early."""
    events = meta_dataset(candles, strategy, barriers=barriers)
    grid = candles["ts"].unique().sort().to_numpy()
    folds, ts_parts, ret_parts = [], [], []
    fold_iter = splitter.split(events["ts"].to_numpy(), events["t1"].to_numpy(), grid=grid)
    for fold in fold_iter:
        model = fit_threshold(events[fold.train], strategy, barriers, estimator_params=estimator_params)
        ts, ret, n_trades = trade_window(candles, model, start=fold.test_start, end=fold.test_end,
                                         timeframe=timeframe, backtest=backtest)
        ts_parts.append(ts)
        ret_parts.append(ret)
        folds.append(FoldResult(fold.index, fold.test_start, fold.test_end, int(fold.train.size), n_trades,
                                sharpe_per_period(ret), max_drawdown_of(ret)))
        if on_fold:
            on_fold(fold.index, sharpe_per_period(np.concatenate(ret_parts)))
    ts_all = np.concatenate(ts_parts) if ts_parts else np.empty(0, dtype=np.int64)
    ret_all = np.concatenate(ret_parts) if ret_parts else np.empty(0)
    return WalkForwardResult(tuple(folds), ts_all, ret_all, events.height)
