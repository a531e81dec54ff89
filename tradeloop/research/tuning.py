"""optuna studies over strategy and threshold parameters, scored by purged walk-forward.

* Storage is resumable: a journal file by default, the database when ``storage`` is a
  SQLAlchemy URL. Re-running the same study continues it up to ``n_trials`` in total.
* Each fold reports the running out-of-sample Sharpe; the median pruner stops weak trials.
* Hard constraint: a trial whose out-of-sample max drawdown exceeds ``max_drawdown`` is
  infeasible (optuna's constraints) and can never be the best trial.
* Every trial counts toward the overfitting statistics: pruned and infeasible ones too.
  Each trial's out-of-sample returns are kept beside the study for PBO and DSR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
import polars as pl
from optuna.storages.journal import JournalFileBackend, JournalStorage
from pydantic import BaseModel, ConfigDict, Field

from tradeloop.backtest import BacktestConfig
from tradeloop.data.schema import timeframe_ms
from tradeloop.errors import ConfigError
from tradeloop.evaluation import PurgedWalkForward
from tradeloop.research.search import params_of, suggest
from tradeloop.research.walkforward import walk_forward

DD_KEY, RETURNS_DIR = "max_drawdown", "returns"


class TuningConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = "sma_cross"
    n_trials: int = Field(default=30, ge=1)
    n_splits: int = Field(default=4, ge=2)
    embargo_bars: int = Field(default=6, ge=0)
    max_drawdown: float = Field(default=0.5, gt=0.0, le=1.0)
    cost: float = Field(default=0.002, ge=0.0, lt=0.1)
    seed: int = 0
    study_name: str | None = None


@dataclass(frozen=True)
class TuningResult:
    study: optuna.Study
    best_params: dict
    best_value: float
    n_trials: int  # every finished trial: complete, pruned or infeasible
    trial_sharpes: np.ndarray  # per-period OOS Sharpe of every trial with returns
    returns_matrix: np.ndarray  # (bars x complete trials) OOS returns, for PBO
    best_returns: np.ndarray


def make_storage(*, study_dir: Path, storage: str | None = None):
    if storage:
        return optuna.storages.RDBStorage(storage)
    study_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))


def tune(candles: pl.DataFrame, *, config: TuningConfig, timeframe: str, study_dir: Path,
         storage: str | None = None, backtest: BacktestConfig | None = None) -> TuningResult:
    """Run (or resume) the study; returns the best feasible trial and the overfitting inputs."""
    backtest = backtest or BacktestConfig(fee_rate=config.cost / 2, cash_sharing=True, close_at_end=True,
                                          fraction=1.0)
    study_dir = Path(study_dir)
    (study_dir / RETURNS_DIR).mkdir(parents=True, exist_ok=True)
    splitter = PurgedWalkForward(n_splits=config.n_splits, embargo_ms=config.embargo_bars * timeframe_ms(timeframe))
    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=8)
    study = optuna.create_study(
        study_name=config.study_name or f"{config.strategy}-{timeframe}", direction="maximize",
        storage=make_storage(study_dir=study_dir, storage=storage), sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1), load_if_exists=True)

    def objective(trial: optuna.Trial) -> float:
        strategy, barriers = suggest(trial, config.strategy, cost=config.cost)
        trial.set_user_attr("params", params_of(strategy, barriers))

        def report(step: int, running_sharpe: float) -> None:
            trial.report(running_sharpe, step)
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            result = walk_forward(candles, strategy, barriers, timeframe=timeframe, splitter=splitter,
                                  backtest=backtest, on_fold=report)
        except optuna.TrialPruned:
            trial.set_user_attr(DD_KEY, 1.0)
            trial.set_constraint(DD_KEY, 1.0 - config.max_drawdown)
            raise
        np.save(study_dir / RETURNS_DIR / f"trial-{trial.number}.npy", result.returns)
        trial.set_user_attr(DD_KEY, result.max_drawdown)
        trial.set_constraint(DD_KEY, result.max_drawdown - config.max_drawdown)  # feasible when <= 0
        trial.set_user_attr("oos_sharpe", result.sharpe)
        return result.sharpe if math.isfinite(result.sharpe) else -1.0

    done = [t for t in study.trials if t.state.is_finished()]
    remaining = config.n_trials - len(done)
    if remaining > 0:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study.optimize(objective, n_trials=remaining, catch=(ConfigError,))
    return _summarise(study, study_dir, config)


def _summarise(study: optuna.Study, study_dir: Path, config: TuningConfig) -> TuningResult:
    finished = [t for t in study.trials if t.state.is_finished()]
    feasible = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE
                and t.user_attrs.get(DD_KEY, 1.0) <= config.max_drawdown]
    if not feasible:
        raise ConfigError(f"no trial of study {study.study_name!r} met max_drawdown <= {config.max_drawdown}; "
                          "loosen the limit, change the strategy or add data")
    best = max(feasible, key=lambda t: t.value)
    complete = [t for t in finished if (study_dir / RETURNS_DIR / f"trial-{t.number}.npy").exists()]
    series = {t.number: np.load(study_dir / RETURNS_DIR / f"trial-{t.number}.npy") for t in complete}
    # pruned trials have no full returns: their last reported running Sharpe still counts
    sharpes = [t.user_attrs.get("oos_sharpe", t.value if t.value is not None else _last(t)) for t in finished]
    length = max(len(s) for s in series.values())
    matrix = np.column_stack([s for s in series.values() if len(s) == length])
    return TuningResult(study=study, best_params=best.user_attrs["params"], best_value=float(best.value),
                        n_trials=len(finished), trial_sharpes=np.asarray([s for s in sharpes if s is not None]),
                        returns_matrix=matrix, best_returns=series[best.number])


def _last(trial: optuna.trial.FrozenTrial) -> float | None:
    return trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None
