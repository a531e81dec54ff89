"""Fast regressions of the research loop (seconds each): a study is never reused under another
scoring config, resumed workers see the current n_trials, and every configuration's
walk-forward covers the same test periods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.research import tuning
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.tuning import (
    DD_KEY,
    FOLDS_KEY,
    RETURNS_KEY,
    TuningConfig,
    data_version,
    encode_returns,
    open_study,
    study_name_of,
    tune,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "coinbase__BTC-USD__4h.parquet"
OLD = TuningConfig(n_trials=1, policy=RetrainPolicy(retrain_every_days=30, max_model_age_days=45))


@pytest.fixture(scope="module")
def candles() -> pl.DataFrame:
    return (
        pl.read_parquet(SAMPLE)
        .tail(300)
        .with_columns(symbol=pl.lit("BTC-USD"))
        .select("symbol", "ts", "open", "high", "low", "close", "volume")
    )


def _finished_study(candles: pl.DataFrame, config: TuningConfig, study_dir: Path) -> optuna.Study:
    """The study tune() would open for ``config``, holding one finished trial (no walk-forward run)."""
    version = data_version(candles)
    study = open_study(
        config, name=study_name_of(config, timeframe="4h", version=version), study_dir=study_dir, storage=None
    )
    study.set_user_attr("data_version", version)
    study.set_user_attr("config", config.model_dump(mode="json"))
    study.add_trial(
        optuna.trial.create_trial(
            value=0.05,
            params={},
            distributions={},
            user_attrs={
                "params": {"strategy": "sma_cross", "fast": 5, "slow": 10},
                RETURNS_KEY: encode_returns(np.full(50, 0.01)),
                DD_KEY: -0.01,
                "oos_sharpe": 0.05,
                FOLDS_KEY: [],
            },
        )
    )
    return study


def test_a_new_retrain_policy_on_the_same_data_is_a_new_study(candles: pl.DataFrame, tmp_path: Path) -> None:
    old = _finished_study(candles, OLD, tmp_path)
    new = OLD.model_copy(update={"policy": RetrainPolicy(retrain_every_days=1, max_model_age_days=2)})
    assert study_name_of(new, timeframe="4h", version=data_version(candles)) != old.study_name
    named = new.model_copy(update={"study_name": old.study_name})  # an explicit name: refused, not reused
    with pytest.raises(ConfigError, match="scored its trials under"):
        tune(candles, config=named, timeframe="4h", study_dir=tmp_path)


def test_resumed_workers_read_the_current_n_trials(
    candles: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _finished_study(candles, OLD, tmp_path)
    seen = []

    def fake_workers(candles, *, config, timeframe, study_name, study_dir, storage, backtest=None) -> None:
        stored = optuna.load_study(study_name=study_name, storage=tuning.make_storage(study_dir=study_dir))
        seen.append(stored.user_attrs["config"]["n_trials"])  # what tradeloop.research.workers.work reads

    monkeypatch.setattr("tradeloop.research.workers.run_workers", fake_workers)
    tune(candles, config=OLD.model_copy(update={"n_trials": 10, "workers": 2}), timeframe="4h", study_dir=tmp_path)
    assert study.study_name and seen == [10]


def test_every_configuration_is_traded_over_the_same_test_periods() -> None:
    """A configuration without events before the first test period is reduce-only there (no
    model yet, as live), not left out: its returns line up bar for bar with the others'."""
    from tradeloop.evaluation import PurgedWalkForward
    from tradeloop.research.tuning import default_backtest
    from tradeloop.research.walkforward import walk_forward
    from tradeloop.strategies import get_strategy
    from tradeloop.thresholds import BarrierConfig

    short = pl.read_parquet(SAMPLE).tail(700).with_columns(symbol=pl.lit("BTC-USD"))
    runs = [
        walk_forward(
            short,
            get_strategy("sma_cross", fast=fast, slow=slow),
            BarrierConfig(horizon=10),
            timeframe="4h",
            splitter=PurgedWalkForward(n_splits=4),
            backtest=default_backtest(OLD),
            policy=OLD.policy,
        )
        for fast, slow in ((5, 10), (40, 140))
    ]
    assert [f.index for f in runs[1].folds] == [0, 1, 2, 3]  # no event is known before fold 0: still traded
    np.testing.assert_array_equal(runs[0].ts, runs[1].ts)
    assert runs[1].folds[0].test_trades == 0 and runs[1].folds[0].train_events == 0


def test_a_period_starting_between_retrains_is_decided_by_the_last_scheduled_refit() -> None:
    """Live holds, when a period begins, the model of the last scheduled retrain (up to a
    cadence old), not one refit at the period's first bar: so does the walk-forward."""
    from tradeloop.research.walkforward import policy_schedule
    from tradeloop.strategies import SmaCross
    from tradeloop.thresholds import BarrierConfig, meta_dataset

    bar = 4 * 3_600_000
    frame = pl.read_parquet(SAMPLE).tail(3000).with_columns(symbol=pl.lit("BTC-USD"))
    policy = RetrainPolicy(retrain_every_days=30, max_model_age_days=45)
    start = int(frame["ts"][2000])
    assert not policy.is_retrain_time(start)
    events = meta_dataset(frame, SmaCross(fast=10, slow=30), barriers=BarrierConfig())
    schedule = policy_schedule(
        events,
        SmaCross(fast=10, slow=30),
        BarrierConfig(),
        policy=policy,
        start=start,
        end=start + 40 * 86_400_000,
        embargo_ms=0,
        bar_ms=bar,
        estimator_params={"min_samples": 10},
    )
    first = schedule[0]
    assert first.at == policy.last_retrain_time(start) < start
    assert first.model is not None and first.model.trained_until == first.at - bar
    assert [r.at for r in schedule[1:]] == policy.retrain_times(start, start + 40 * 86_400_000).tolist()
