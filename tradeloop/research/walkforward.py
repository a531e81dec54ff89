"""Walk-forward evaluation of one configuration under the retrain policy, as live would trade it.

For every fold (``PurgedWalkForward``: test periods cut on the time axis) the test period is
traded exactly as the live engine would have traded it under the ``RetrainPolicy``:

* at the fold's start and at every scheduled retrain time inside it, the threshold model is
  refit on the events known then (label closed before the retrain time minus the embargo,
  inside the policy's training window);
* a refit without enough events to learn from counts as a failed retrain: the previous
  model stays in force and keeps ageing;
* every bar is decided at its own time: once the model in force is older than the policy's
  maximum age, the policy's stale rule applies (reduce-only: exits only);
* positions carry across refits; nothing is closed at the fold's end (open positions are
  marked to market), as in a live session.

The out-of-sample bar returns are what the promotion gate judges. ``policy_schedule`` and
``simulate`` are public so that the same refits can be replayed through the live engine
(``pipelines.replay``): the test of that is the proof that the evidence equals live.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.data.schema import earliest, latest, timeframe_ms
from tradeloop.evaluation import PurgedWalkForward
from tradeloop.evaluation.overfitting import sharpe_per_period
from tradeloop.research.policy import RetrainPolicy
from tradeloop.strategies import Strategy
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel, meta_dataset
from tradeloop.thresholds.decide import apply_model, enrich


@dataclass(frozen=True)
class FoldResult:
    index: int
    test_start: int
    test_end: int
    train_events: int  # events the fold's first model learnt from
    test_trades: int
    sharpe: float  # per bar
    max_drawdown: float  # negative fraction
    refits: int  # models fitted in the test period (the first one included)
    failed_refits: int  # retrains with too few events: the previous model stayed
    stale_bars: int  # bars decided while the model in force was stale


@dataclass(frozen=True)
class WalkForwardResult:
    folds: tuple[FoldResult, ...]
    ts: np.ndarray  # out-of-sample bar times, every fold's test period in order
    returns: np.ndarray  # portfolio return per out-of-sample bar
    events: int
    entries: pl.DataFrame | None = None  # out-of-sample entries: symbol, ts, proba, accepted

    @property
    def sharpe(self) -> float:
        return sharpe_per_period(self.returns)

    @property
    def max_drawdown(self) -> float:
        return max_drawdown_of(self.returns)


@dataclass(frozen=True)
class Refit:
    """From ``at`` on, ``model`` decides (None: no model yet, reduce-only)."""

    at: int
    model: ThresholdModel | None
    fitted: bool  # False: this retrain failed and the model before it stays in force


def max_drawdown_of(returns: np.ndarray) -> float:
    """Largest fall from a high-water mark, as a negative fraction (0.0 when none)."""
    if returns.size == 0:
        return 0.0
    curve = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], curve]))[1:]
    return float(np.min(curve / peak - 1.0))


def fit_threshold(
    events: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    estimator_params: dict | None = None,
    policy: RetrainPolicy | None = None,
    until: int | None = None,
    features: Sequence[str] = META_FEATURES,
) -> ThresholdModel:
    """Train the adaptive threshold on labelled events (time-ordered) of one configuration.

    ``until``: the ts of the last bar the training could see (the data cut-off: the model's
    age counts from it); default the last label's end. With ``policy`` the model carries its
    maximum age and stale rule. ``features``: the columns of ``events`` the model reads."""
    est = AdaptiveThreshold(cost=barriers.cost, **(estimator_params or {})).fit(
        events.select(features).to_numpy(),
        events["label"].to_numpy(),
        returns=events["ret"].to_numpy(),
        ts=events["ts"].to_numpy(),
        t1=events["t1"].to_numpy(),
    )
    if until is None:
        until = latest(events["t1"]) if events.height else 0
    model = ThresholdModel(
        strategy=strategy, barriers=barriers, estimator=est, trained_until=until, features=tuple(features)
    )
    if events.height:
        model.info["trained_from"] = earliest(events["ts"])
    if policy is not None:
        model.max_age_ms, model.on_stale = policy.max_age_ms, policy.on_stale
        model.info["retrain_policy"] = policy.model_dump(mode="json")
    return model


def events_known_at(events: pl.DataFrame, at_ms: int, *, policy: RetrainPolicy, embargo_ms: int) -> pl.DataFrame:
    """The events a retrain at ``at_ms`` may learn from: label closed before ``at_ms`` minus the
    embargo, decided inside the policy's training window."""
    known = pl.col("t1") < at_ms - embargo_ms
    start = policy.training_start(at_ms)
    if start is not None:
        known = known & (pl.col("ts") >= start)
    return events.filter(known)


def refit_at(
    events: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    at: int,
    policy: RetrainPolicy,
    embargo_ms: int,
    bar_ms: int,
    estimator_params: dict | None = None,
    features: Sequence[str] = META_FEATURES,
) -> ThresholdModel:
    """The refit a retrain at ``at`` makes: the events known then, trained until the last bar
    closed by then (``bar_ms``: the timeframe)."""
    return fit_threshold(
        events_known_at(events, at, policy=policy, embargo_ms=embargo_ms),
        strategy,
        barriers,
        estimator_params=estimator_params,
        policy=policy,
        until=at - bar_ms,
        features=features,
    )


def policy_schedule(
    events: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    policy: RetrainPolicy,
    start: int,
    end: int,
    embargo_ms: int,
    bar_ms: int,
    estimator_params: dict | None = None,
    previous: ThresholdModel | None = None,
    features: Sequence[str] = META_FEATURES,
) -> list[Refit]:
    """The models in force over [start, end]: the refit of the last scheduled retrain at or
    before ``start`` (what live would hold when the period begins), then one at every retrain
    time of the policy inside the period, each trained until the last bar closed by then
    (``bar_ms``: the timeframe). ``previous``: the model in force before that first refit."""
    schedule, current = [], previous
    for at in [policy.last_retrain_time(start), *policy.retrain_times(start, end).tolist()]:
        model = refit_at(
            events,
            strategy,
            barriers,
            at=at,
            policy=policy,
            embargo_ms=embargo_ms,
            bar_ms=bar_ms,
            estimator_params=estimator_params,
            features=features,
        )
        fitted = not model.estimator.fallback_
        current = model if fitted else current
        schedule.append(Refit(at=at, model=current, fitted=fitted))
    return schedule


def simulate(enriched: pl.DataFrame, schedule: list[Refit], *, start: int, end: int) -> pl.DataFrame:
    """Rows of ``enriched`` from ``start`` to ``end``, each decided by the model in force at its
    time, at its time (stale models follow their stale rule)."""
    parts = []
    for k, refit in enumerate(schedule):
        until = schedule[k + 1].at if k + 1 < len(schedule) else end + 1
        part = enriched.filter(pl.col("ts").is_between(max(refit.at, start), until, closed="left"))
        if part.height:
            parts.append(apply_model(part, refit.model, now_ms="bar"))
    if not parts:
        return apply_model(enriched.clear(), None, now_ms="bar")
    return pl.concat(parts).sort("symbol", "ts")


def stale_rows(decided: pl.DataFrame, schedule: list[Refit]) -> int:
    """Bar times decided while the model in force was stale (or missing)."""
    times = decided["ts"].unique().to_numpy()
    starts = np.array([r.at for r in schedule])
    which = np.searchsorted(starts, times, side="right") - 1
    stale = 0
    for k, refit in enumerate(schedule):
        mine = times[which == k]
        if refit.model is None:
            stale += mine.size
        else:
            stale += int((mine - refit.model.trained_until > refit.model.max_age_ms).sum())
    return stale


def trade(decided: pl.DataFrame, *, timeframe: str, backtest: BacktestConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Backtest decided rows; (bar ts, portfolio return per bar, number of trades)."""
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
    policy: RetrainPolicy,
    estimator_params: dict | None = None,
    on_fold: Callable[[int, np.ndarray], None] | None = None,
    features: Sequence[str] = META_FEATURES,
) -> WalkForwardResult:
    """Evaluate one configuration under ``policy``; ``on_fold(index, returns so far)`` may
    raise to stop early (optuna's pruning). ``features``: what the models read (every refit
    selects among them on its own training events when ``estimator_params`` sets
    ``max_features``)."""
    events = meta_dataset(candles, strategy, barriers=barriers, features=features)
    enriched = enrich(candles, strategy, features)
    grid = candles["ts"].unique().sort().to_numpy()
    folds, ts_parts, ret_parts, entry_parts = [], [], [], []
    # every fold is traded, with or without events before it (no model yet: reduce-only, as
    # live), so that every configuration covers the same bars: PBO's matrix and the champion's
    # re-evaluation compare the same test periods
    fold_iter = replace(splitter, min_train=0).split(events["ts"].to_numpy(), events["t1"].to_numpy(), grid=grid)
    for fold in fold_iter:
        schedule = policy_schedule(
            events,
            strategy,
            barriers,
            policy=policy,
            start=fold.test_start,
            end=fold.test_end,
            embargo_ms=splitter.embargo_ms,
            bar_ms=timeframe_ms(timeframe),
            estimator_params=estimator_params,
            features=features,
        )
        decided = simulate(enriched, schedule, start=fold.test_start, end=fold.test_end)
        entry_parts.append(
            decided.filter(pl.col("proba").is_not_null()).select(
                "symbol", "ts", "proba", accepted=(pl.col("signal") & ENTRIES) != 0
            )
        )
        ts, ret, n_trades = trade(decided, timeframe=timeframe, backtest=backtest)
        ts_parts.append(ts)
        ret_parts.append(ret)
        first = schedule[0].model
        folds.append(
            FoldResult(
                fold.index,
                fold.test_start,
                fold.test_end,
                train_events=first.estimator.n_samples_ if first is not None else 0,
                test_trades=n_trades,
                sharpe=sharpe_per_period(ret),
                max_drawdown=max_drawdown_of(ret),
                refits=sum(r.fitted for r in schedule),
                failed_refits=sum(not r.fitted for r in schedule),
                stale_bars=stale_rows(decided, schedule),
            )
        )
        if on_fold:
            on_fold(fold.index, np.concatenate(ret_parts))
    ts_all = np.concatenate(ts_parts) if ts_parts else np.empty(0, dtype=np.int64)
    ret_all = np.concatenate(ret_parts) if ret_parts else np.empty(0)
    entries = pl.concat(entry_parts) if entry_parts else None
    return WalkForwardResult(tuple(folds), ts_all, ret_all, events.height, entries)
