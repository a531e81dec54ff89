"""The research steps the notebooks and the pipeline call. Each step reads its inputs and
writes only to the paths it is given; outputs are Parquet/JSON/NumPy files, written whole."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from tradeloop.backtest import BacktestConfig, run_backtest
from tradeloop.data import CandleLake, SeriesKey, latest
from tradeloop.data.atomic import write_bytes_atomic, write_parquet_atomic
from tradeloop.data.schema import CANDLE_COLUMNS, timeframe_ms
from tradeloop.errors import ConfigError
from tradeloop.evaluation import sharpe_per_period
from tradeloop.features import compute_features
from tradeloop.performance import result_metrics
from tradeloop.research.model_choice import MODEL_KEYS, model_options
from tradeloop.research.tuning import TuningConfig, default_backtest, splitter_of, tune
from tradeloop.research.walkforward import events_known_at, fit_threshold, max_drawdown_of, walk_forward
from tradeloop.strategies import Strategy, get_strategy
from tradeloop.strategies.signals import ENTRIES
from tradeloop.thresholds import BarrierConfig, ThresholdModel, Universe, meta_dataset
from tradeloop.thresholds.decide import decide

MODEL_DIR, TUNING_JSON, EVALUATION_NPZ = "model", "tuning.json", "evaluation.npz"
METRICS_JSON, EQUITY_PARQUET, TRADES_PARQUET = "metrics.json", "equity.parquet", "trades.parquet"


def load_universe(lake: CandleLake, *, exchange: str, symbols: list[str], timeframe: str) -> pl.DataFrame:
    """Candles of several symbols (long frame: symbol, ts, OHLCV), sorted by symbol then ts."""
    keys = [SeriesKey(exchange, s, timeframe) for s in symbols]
    frame = lake.read_many(keys)
    return frame.select("symbol", *CANDLE_COLUMNS).sort("symbol", "ts")


def candles_of(frame: pl.DataFrame) -> pl.DataFrame:
    """The candle columns of a features frame (what strategies and labels start from)."""
    return frame.select("symbol", *CANDLE_COLUMNS)


def write_json(doc: dict, path: Path) -> None:
    write_bytes_atomic(json.dumps(doc, indent=2, sort_keys=True, default=float).encode(), Path(path))


def build_features(candles: pl.DataFrame, output_path: Path) -> pl.DataFrame:
    features = compute_features(candles)
    write_parquet_atomic(features, Path(output_path))
    return features


def train_thresholds(
    candles: pl.DataFrame,
    *,
    config: TuningConfig,
    exchange: str,
    timeframe: str,
    output_dir: Path,
    storage: str | None = None,
    champion_params: dict | None = None,
) -> dict:
    """Tune (optuna over the policy's walk-forward), then fit the final model on the events
    known at the data's end, inside the policy's training window.

    ``champion_params``: the incumbent champion's parameters (``params_of``). The new study
    tries them first (warm start), and they are re-evaluated on the same folds of these
    candles, so the gate compares challenger and champion on identical data.

    Writes ``model/`` (the ThresholdModel with its universe, training window, data hash and
    retrain policy), ``tuning.json`` (best parameters, folds, trial counts, the champion's
    re-evaluation) and ``evaluation.npz`` (the best trial's OOS returns, every trial's
    Sharpe, the returns matrix for PBO).
    """
    output_dir = Path(output_dir)
    result = tune(
        candles,
        config=config,
        timeframe=timeframe,
        study_dir=output_dir / "study",
        storage=storage,
        warm_start=champion_params,
    )
    strategy, barriers = build_params(result.best_params, cost=config.cost)
    estimator_params, features = model_options(result.best_params)  # the best trial's classifier
    events = meta_dataset(candles, strategy, barriers=barriers, features=features)
    end = latest(candles["ts"]) + timeframe_ms(timeframe)  # the first bar the model will decide
    bar_ms = timeframe_ms(timeframe)  # the refit the walk-forward would make at ``end``: same purge
    model = fit_threshold(
        events_known_at(events, end, policy=config.policy, embargo_ms=config.embargo_bars * bar_ms),
        strategy,
        barriers,
        policy=config.policy,
        until=end - bar_ms,
        estimator_params=estimator_params,
        features=features,
    )
    symbols = sorted(candles["symbol"].unique().to_list())
    model.universe = Universe(exchange=exchange, timeframe=timeframe, symbols=tuple(symbols))
    model.info.update(
        {
            "timeframe": timeframe,
            "symbols": symbols,
            "events": events.height,
            "data_hash": result.data_version,
            "study": result.study.study_name,
            "embargo_bars": config.embargo_bars,
            "fraction": config.fraction,
        }
    )
    model.save(output_dir / MODEL_DIR)
    np.savez(
        output_dir / EVALUATION_NPZ,
        best_returns=result.best_returns,
        trial_sharpes=result.trial_sharpes,
        returns_matrix=result.returns_matrix,
    )
    summary = {
        "model": model.estimator.get_params()["model"],
        "features": list(model.features),
        "best_params": result.best_params,
        "best_oos_sharpe": result.best_value,
        "n_trials": result.n_trials,
        "events": events.height,
        "folds": list(result.best_folds),
        "pbo_trials": list(result.pbo_trials),
        "data_version": result.data_version,
        "study": result.study.study_name,
        "policy": config.policy.model_dump(mode="json"),
        "symbols": symbols,
        "threshold": model.estimator.threshold_,
        "p_star": model.estimator.p_star_,
        "margin": model.estimator.margin_,
        "fallback": model.estimator.fallback_,
        "trained_from": model.info.get("trained_from"),
        "trained_until": model.trained_until,
        "champion": reevaluate(candles, champion_params, config=config, timeframe=timeframe)
        if champion_params
        else None,
    }
    write_json(summary, output_dir / TUNING_JSON)
    return summary


def build_params(params: dict, *, cost: float) -> tuple[Strategy, BarrierConfig]:
    """The strategy and barriers of a parameter dict (``params_of``: a trial's or a champion's)."""
    params = {k: v for k, v in params.items() if k not in MODEL_KEYS}  # the model's options: model_options
    name = params.pop("strategy")
    strategy = get_strategy(name, **{k: v for k, v in params.items() if k not in BarrierConfig.model_fields})
    barriers = BarrierConfig(
        cost=cost, **{k: v for k, v in params.items() if k in BarrierConfig.model_fields and k != "cost"}
    )
    return strategy, barriers


def reevaluate(candles: pl.DataFrame, params: dict, *, config: TuningConfig, timeframe: str) -> dict:
    """The champion's parameters walked forward on these candles, folds and policy."""
    strategy, barriers = build_params(params, cost=config.cost)
    estimator_params, features = model_options(params)  # the champion's own classifier and features
    splitter = splitter_of(config, timeframe=timeframe)
    result = walk_forward(
        candles,
        strategy,
        barriers,
        timeframe=timeframe,
        splitter=splitter,
        backtest=default_backtest(config),
        policy=config.policy,
        estimator_params=estimator_params,
        features=features,
    )
    return {
        "params": params,
        "sharpe_per_bar": result.sharpe,
        "max_drawdown": result.max_drawdown,
        "bars": int(result.returns.size),
        "trades": sum(f.test_trades for f in result.folds),
    }


def load_evaluation(directory: Path) -> dict[str, np.ndarray]:
    path = Path(directory) / EVALUATION_NPZ
    if not path.exists():
        raise ConfigError(f"{path} is missing: run the thresholds step first")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def report_backtest(
    candles: pl.DataFrame,
    *,
    model_dir: Path,
    evaluation_dir: Path,
    timeframe: str,
    output_dir: Path,
    backtest: BacktestConfig | None = None,
) -> dict:
    """Full-history backtest of the trained model (display) + its out-of-sample metrics (gate).

    Writes ``metrics.json``, ``equity.parquet`` and ``trades.parquet`` to ``output_dir``.
    """
    output_dir = Path(output_dir)
    model = ThresholdModel.load(Path(model_dir))
    backtest = backtest or BacktestConfig(fee_rate=model.barriers.cost / 2, cash_sharing=True)
    decided = decide(candles, model, now_ms=model.trained_until)
    result = run_backtest(decided, backtest, timeframe=timeframe)
    metrics = result_metrics(result).row(0, named=True)
    evaluation = load_evaluation(evaluation_dir)
    oos = evaluation["best_returns"]
    scored = decided["proba"].is_not_null()
    entered = (decided["signal"] & ENTRIES) != 0
    doc = {
        "full_history": {k: v for k, v in metrics.items() if k != "portfolio"},
        "oos": {
            "sharpe_per_bar": sharpe_per_period(oos),
            "max_drawdown": max_drawdown_of(oos),
            "total_return": float(np.prod(1.0 + oos) - 1.0),
            "bars": int(oos.size),
        },
        "signals_taken": int((scored & entered).sum()),
        "signals_rejected": int((scored & ~entered).sum()),
        "config": backtest.model_dump(mode="json"),
        "timeframe": timeframe,
    }  # the terms, for readers to state
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json(doc, output_dir / METRICS_JSON)
    write_parquet_atomic(result.equity, output_dir / EQUITY_PARQUET)
    write_parquet_atomic(result.trades, output_dir / TRADES_PARQUET)
    return doc
