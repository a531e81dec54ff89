"""Two optuna worker processes share one study on the real PostgreSQL server; a worker
refuses candles that are not the study's data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.tuning import RETURNS_KEY, TuningConfig, decode_returns, tune
from tradeloop.research.workers import work

POLICY = RetrainPolicy(retrain_every_days=90, max_model_age_days=120)


@pytest.fixture(scope="module")
def candles(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC-USD")), eth_4h.with_columns(symbol=pl.lit("ETH-USD"))])
    return both.filter(pl.col("ts") >= both["ts"].max() - 3 * 365 * 86_400_000).sort("symbol", "ts")


@pytest.mark.timeout(900)
def test_two_worker_processes_share_one_study_on_postgresql(candles: pl.DataFrame, pg_url: str, tmp_path: Path) -> None:
    config = TuningConfig(n_trials=6, n_splits=2, max_drawdown=-1.0, policy=POLICY, workers=2)
    result = tune(candles, config=config, timeframe="4h", study_dir=tmp_path / "study", storage=pg_url)
    trials = optuna.load_study(study_name=result.study.study_name, storage=pg_url).trials
    finished = [t for t in trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7  # each worker stops once the study has its 6 (one may be mid-trial)
    workers = {t.user_attrs["worker"] for t in finished}
    assert len(workers) == 2  # both processes ran trials of the one study
    assert sorted(t.number for t in trials) == list(range(len(trials)))
    # every trial's returns live in the database, so either machine can compute PBO and DSR
    complete = [t for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete and all(decode_returns(t.user_attrs[RETURNS_KEY]).size > 0 for t in complete)
    assert result.n_trials == len(finished)
    assert not (tmp_path / "study" / "journal.log").exists()
    best = max(complete, key=lambda t: t.value)
    np.testing.assert_array_equal(result.best_returns, decode_returns(best.user_attrs[RETURNS_KEY]))


def test_a_worker_refuses_candles_of_another_data_version(candles: pl.DataFrame, tmp_path: Path) -> None:
    config = TuningConfig(n_trials=1, n_splits=2, max_drawdown=-1.0, policy=POLICY)
    result = tune(candles, config=config, timeframe="4h", study_dir=tmp_path)
    other = candles.filter(pl.col("ts") < candles["ts"].max())  # one bar fewer: other data
    with pytest.raises(ConfigError, match="data version"):
        work(other, study_name=result.study.study_name, timeframe="4h", study_dir=tmp_path, storage=None)


def test_new_candles_mean_a_new_study_warm_started_with_the_champion(candles: pl.DataFrame, tmp_path: Path) -> None:
    """After new candles a retrain runs a new study (it does not resume the finished one and
    report the old Sharpe), and that study tries the champion's parameters first."""
    config = TuningConfig(n_trials=2, n_splits=2, max_drawdown=-1.0, policy=POLICY)
    first = tune(
        candles.filter(pl.col("ts") < candles["ts"].max() - 30 * 86_400_000),
        config=config,
        timeframe="4h",
        study_dir=tmp_path,
    )
    champion = first.best_params
    second = tune(candles, config=config, timeframe="4h", study_dir=tmp_path, warm_start=champion)
    assert second.study.study_name != first.study.study_name and second.data_version != first.data_version
    assert second.n_trials == 2  # new trials on the new data
    tried_first = second.study.trials[0]
    assert tried_first.user_attrs["params"] == champion
