"""optuna studies over strategy and threshold parameters, scored by the policy's walk-forward.

* One study per data version: the study's name carries the hash of the candles it scores
  (``data_version``), so a retrain after new candles runs a new study on the data as it is
  now, warm-started with the previous best parameters (``warm_start``: enqueued first).
  It carries the hash of the scoring config too (``SCORING_FIELDS``: policy, folds, cost...),
  so a changed policy never reuses trials scored under the old one. Re-running on the same
  data and config resumes the same study up to ``n_trials`` in total.
* Storage: a journal file by default, the database when ``storage`` is a SQLAlchemy URL.
  Every trial keeps its out-of-sample returns in the storage (user attribute), so worker
  processes on several machines can share one study on one database
  (``tradeloop.research.workers``).
* Each fold reports the running out-of-sample Sharpe; the median pruner stops weak trials.
* Hard constraint: a trial whose out-of-sample drawdown is worse than ``max_drawdown`` (a
  negative fraction) is infeasible and can never be the best trial.
* Every trial counts toward the overfitting statistics, pruned and infeasible ones too.
"""

from __future__ import annotations

import base64
import hashlib
import json
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
from tradeloop.evaluation.overfitting import sharpe_per_period
from tradeloop.features.cache import WorkCache, reusing
from tradeloop.research.model_choice import MODEL_KEYS, ModelChoice
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.search import params_of, suggest
from tradeloop.research.walkforward import walk_forward

DD_KEY, RETURNS_KEY, FOLDS_KEY = "max_drawdown", "oos_returns", "folds"


class TuningConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    strategy: str = "sma_cross"
    n_trials: int = Field(default=30, ge=1)
    n_splits: int = Field(default=4, ge=2)
    embargo_bars: int = Field(default=6, ge=0)
    max_drawdown: float = Field(
        default=-0.5, ge=-1.0, lt=0.0, description="worst out-of-sample drawdown allowed, a negative fraction"
    )
    cost: float = Field(default=0.002, ge=0.0, lt=0.1)
    seed: int = 0
    study_name: str | None = Field(default=None, description="default: strategy-timeframe-data version")
    policy: RetrainPolicy = RetrainPolicy()
    workers: int = Field(default=1, ge=1, le=64, description="trial worker processes sharing the study")
    fraction: float = Field(
        default=0.5,
        gt=0.0,
        le=1.0,
        description="share of equity per new position, as the "
        "live session will size it (tradeloop live run --fraction; default 0.5 there too)",
    )
    model: ModelChoice = Field(
        default_factory=ModelChoice,
        description="the threshold model's classifier and features; model='auto' searches both classifiers",
    )


@dataclass(frozen=True)
class TuningResult:
    study: optuna.Study
    best_params: dict
    best_value: float
    n_trials: int  # every finished trial: complete, pruned or infeasible
    trial_sharpes: np.ndarray  # per-bar OOS Sharpe of every finished trial (pruned: over its folds so far)
    returns_matrix: np.ndarray  # (bars x trials) OOS returns of every trial with enough history, for PBO
    pbo_trials: tuple[int, int]  # (trials in the matrix, of which pruned)
    best_returns: np.ndarray
    best_folds: tuple[dict, ...]  # the best trial's folds: trades, Sharpe, drawdown, refits
    data_version: str


def data_version(candles: pl.DataFrame) -> str:
    """sha256 of the candles a study scores (symbol, ts and OHLCV, in a fixed order)."""
    digest = hashlib.sha256()
    for (symbol,), part in candles.sort("symbol", "ts").group_by("symbol", maintain_order=True):
        digest.update(str(symbol).encode() + b"\0")
        for column in ("ts", "open", "high", "low", "close", "volume"):
            digest.update(np.ascontiguousarray(part[column].to_numpy()).tobytes())
    return digest.hexdigest()


#: the fields that change a trial's score: a study holds trials scored under one value of each
SCORING_FIELDS = ("strategy", "n_splits", "embargo_bars", "cost", "policy", "fraction")


def scoring_of(config: TuningConfig | dict) -> dict:
    doc = config if isinstance(config, dict) else config.model_dump(mode="json")
    scoring = {k: doc.get(k) for k in SCORING_FIELDS}
    model = doc.get("model")
    if model is not None and model != ModelChoice().model_dump(mode="json"):  # the default: as before it existed
        scoring["model"] = model
    return scoring


def study_name_of(config: TuningConfig, *, timeframe: str, version: str) -> str:
    """strategy-timeframe-data version-scoring config (a new policy or fold count is a new study)."""
    scoring = hashlib.sha256(json.dumps(scoring_of(config), sort_keys=True).encode()).hexdigest()
    return config.study_name or f"{config.strategy}-{timeframe}-{version[:12]}-{scoring[:8]}"


def make_storage(*, study_dir: Path, storage: str | None = None):
    if storage:
        return optuna.storages.RDBStorage(storage)
    study_dir.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(study_dir / "journal.log")))


def encode_returns(returns: np.ndarray) -> str:
    return base64.b64encode(np.asarray(returns, dtype="<f8").tobytes()).decode()


def decode_returns(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


def default_backtest(config: TuningConfig) -> BacktestConfig:
    """What a trial trades, as a live session would: one shared cash balance, ``fraction`` of
    equity per new position, half the round-trip cost per side, nothing closed at a fold's
    end (a live session does not close at an arbitrary date)."""
    return BacktestConfig(fee_rate=config.cost / 2, cash_sharing=True, close_at_end=False, fraction=config.fraction)


def splitter_of(config: TuningConfig, *, timeframe: str) -> PurgedWalkForward:
    """The folds every trial, and the champion's re-evaluation, are scored on."""
    return PurgedWalkForward(n_splits=config.n_splits, embargo_ms=config.embargo_bars * timeframe_ms(timeframe))


def objective_of(
    candles: pl.DataFrame,
    *,
    config: TuningConfig,
    timeframe: str,
    backtest: BacktestConfig | None = None,
    reuse: bool = True,
):
    """The optuna objective: a trial's walk-forward under the policy, pruned fold by fold.

    ``reuse``: the objective's trials share one bounded ``WorkCache`` (features, strategy
    signals per window, threshold fits on identical rows; ``tradeloop.features.cache``), so
    later trials skip what earlier ones computed; the values are the same without it."""
    backtest = backtest or default_backtest(config)
    splitter = splitter_of(config, timeframe=timeframe)
    cache = WorkCache() if reuse else None

    choice = config.model

    def objective(trial: optuna.Trial) -> float:
        strategy, barriers = suggest(trial, config.strategy, cost=config.cost)
        kinds = choice.kinds
        kind = kinds[0] if len(kinds) == 1 else str(trial.suggest_categorical("model", list(kinds)))
        trial.set_user_attr("params", {**params_of(strategy, barriers), **choice.params_of(kind)})

        def report(step: int, returns: np.ndarray) -> None:
            running = sharpe_per_period(returns)
            trial.report(running if math.isfinite(running) else -1.0, step)
            if trial.should_prune():
                trial.set_user_attr(RETURNS_KEY, encode_returns(returns))  # partial history, for PBO
                trial.set_user_attr("oos_sharpe", running)
                trial.set_user_attr(DD_KEY, -1.0)
                trial.set_constraint(DD_KEY, 1.0)
                raise optuna.TrialPruned()

        with reusing(cache):
            result = walk_forward(
                candles,
                strategy,
                barriers,
                timeframe=timeframe,
                splitter=splitter,
                backtest=backtest,
                policy=config.policy,
                on_fold=report,
                estimator_params=choice.estimator_params(kind),
                features=choice.feature_names,
            )
        trial.set_user_attr(RETURNS_KEY, encode_returns(result.returns))
        trial.set_user_attr(DD_KEY, result.max_drawdown)
        trial.set_user_attr(
            FOLDS_KEY,
            [
                {
                    "index": f.index,
                    "trades": f.test_trades,
                    "sharpe": f.sharpe,
                    "max_drawdown": f.max_drawdown,
                    "refits": f.refits,
                    "failed_refits": f.failed_refits,
                    "stale_bars": f.stale_bars,
                    "test_start": f.test_start,
                    "test_end": f.test_end,
                }
                for f in result.folds
            ],
        )
        trial.set_constraint(DD_KEY, config.max_drawdown - result.max_drawdown)  # feasible when <= 0
        trial.set_user_attr("oos_sharpe", result.sharpe)
        return result.sharpe if math.isfinite(result.sharpe) else -1.0

    return objective


def open_study(config: TuningConfig, *, name: str, study_dir: Path, storage: str | None) -> optuna.Study:
    sampler = optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=8)
    return optuna.create_study(
        study_name=name,
        direction="maximize",
        storage=make_storage(study_dir=study_dir, storage=storage),
        sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
        load_if_exists=True,
    )


def tune(
    candles: pl.DataFrame,
    *,
    config: TuningConfig,
    timeframe: str,
    study_dir: Path,
    storage: str | None = None,
    backtest: BacktestConfig | None = None,
    warm_start: dict | None = None,
    reuse: bool = True,
) -> TuningResult:
    """Run (or resume) the study of these candles; returns the best feasible trial and the
    overfitting inputs. ``warm_start``: parameters (``params_of``) tried first in a new study.
    ``reuse``: trials share precomputed work (see :func:`objective_of`); False computes all anew."""
    version = data_version(candles)
    name = study_name_of(config, timeframe=timeframe, version=version)
    study = open_study(config, name=name, study_dir=Path(study_dir), storage=storage)
    if not study.trials:
        study.set_user_attr("data_version", version)
        study.set_user_attr("config", config.model_dump(mode="json"))
        if warm_start:
            searched = ("model",) if len(config.model.kinds) > 1 else ()  # of MODEL_KEYS, only a searched one
            study.enqueue_trial(
                {k: v for k, v in warm_start.items() if k != "strategy" and (k not in MODEL_KEYS or k in searched)},
                user_attrs={"warm_start": True},
                skip_if_exists=True,
            )
    elif study.user_attrs.get("data_version", version) != version:
        raise ConfigError(
            f"study {name!r} scores other candles (data version "
            f"{study.user_attrs['data_version'][:12]}, these are {version[:12]}); "
            "leave study_name unset to get one study per data version"
        )
    elif (stored := scoring_of(study.user_attrs.get("config", {}))) != scoring_of(config):
        raise ConfigError(
            f"study {name!r} scored its trials under {stored}, not "
            f"{scoring_of(config)}; leave study_name unset to get one study per scoring config"
        )
    else:  # resumed: workers read the config (n_trials) from the study
        study.set_user_attr("config", config.model_dump(mode="json"))
    remaining = config.n_trials - sum(t.state.is_finished() for t in study.trials)
    if remaining > 0:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if config.workers > 1:
            from tradeloop.research.workers import run_workers

            run_workers(
                candles,
                config=config,
                timeframe=timeframe,
                study_name=name,
                study_dir=Path(study_dir),
                storage=storage,
                backtest=backtest,
            )
            study = open_study(config, name=name, study_dir=Path(study_dir), storage=storage)
        else:
            study.optimize(
                objective_of(candles, config=config, timeframe=timeframe, backtest=backtest, reuse=reuse),
                n_trials=remaining,
                catch=(ConfigError,),
            )
    return summarise(study, config, version=version)


def summarise(study: optuna.Study, config: TuningConfig, *, version: str) -> TuningResult:
    finished = [t for t in study.trials if t.state.is_finished()]
    feasible = [
        t
        for t in finished
        if t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get(DD_KEY, -1.0) >= config.max_drawdown
    ]
    if not feasible:
        raise ConfigError(
            f"no trial of study {study.study_name!r} kept its drawdown above max_drawdown="
            f"{config.max_drawdown}; loosen the limit, change the strategy or add data"
        )
    best = max(feasible, key=_objective)
    series = {t.number: decode_returns(t.user_attrs[RETURNS_KEY]) for t in finished if RETURNS_KEY in t.user_attrs}
    # pruned trials count with the Sharpe of the folds they ran
    sharpes = [t.user_attrs.get("oos_sharpe", t.value if t.value is not None else _last(t)) for t in finished]
    full = max((len(s) for s in series.values()), default=0)
    # PBO over every trial with enough history: at least half the out-of-sample bars, cut to the shortest
    enough = {n: s for n, s in series.items() if len(s) >= full / 2}
    rows = min((len(s) for s in enough.values()), default=0)
    matrix = np.column_stack([s[:rows] for s in enough.values()]) if enough else np.empty((0, 0))
    pruned = sum(1 for t in finished if t.number in enough and t.state == optuna.trial.TrialState.PRUNED)
    return TuningResult(
        study=study,
        best_params=best.user_attrs["params"],
        best_value=_objective(best),
        n_trials=len(finished),
        trial_sharpes=np.asarray([s for s in sharpes if s is not None and math.isfinite(s)]),
        returns_matrix=matrix,
        pbo_trials=(len(enough), pruned),
        best_returns=series[best.number],
        best_folds=tuple(best.user_attrs.get(FOLDS_KEY, ())),
        data_version=version,
    )


def _objective(trial: optuna.trial.FrozenTrial) -> float:
    """A complete trial's value (optuna types it optional: running, pruned and failed trials have none)."""
    assert trial.value is not None, f"trial {trial.number} ({trial.state.name}) has no value"
    return float(trial.value)


def _last(trial: optuna.trial.FrozenTrial) -> float | None:
    return trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None
