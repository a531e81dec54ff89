"""optuna tuning: resumable on a journal file and on the real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.tuning import TuningConfig, tune


@pytest.fixture(scope="module")
def candles(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    both = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC-USD")), eth_4h.with_columns(symbol=pl.lit("ETH-USD"))])
    return both.filter(pl.col("ts") >= both["ts"].max() - 4 * 365 * 86_400_000)  # four years keep it quick


POLICY = RetrainPolicy(retrain_every_days=90, max_model_age_days=120)  # few refits: resuming is what is tested


@pytest.mark.parametrize("where", ["journal", "postgresql"])
def test_study_resumes_up_to_n_trials(where: str, candles: pl.DataFrame, tmp_path: Path, request) -> None:
    storage = request.getfixturevalue("pg_url") if where == "postgresql" else None
    config = TuningConfig(
        n_trials=3, n_splits=3, max_drawdown=-1.0, study_name=f"resume-{where}-{tmp_path.name}", policy=POLICY
    )
    first = tune(candles, config=config, timeframe="4h", study_dir=tmp_path / "study", storage=storage)
    assert first.n_trials == 3
    more = tune(
        candles,
        config=config.model_copy(update={"n_trials": 5}),
        timeframe="4h",
        study_dir=tmp_path / "study",
        storage=storage,
    )
    assert more.n_trials == 5  # 3 resumed + 2 new, not 5 new
    assert [t.number for t in more.study.trials] == [0, 1, 2, 3, 4]
    if where == "postgresql":  # the trials live in the database, not in a file
        assert not (tmp_path / "study" / "journal.log").exists()
        with sa.create_engine(storage).connect() as conn:
            count = conn.execute(
                sa.text("SELECT count(*) FROM trials JOIN studies USING (study_id) WHERE study_name = :n"),
                {"n": config.study_name},
            ).scalar()
        assert count == 5
    else:
        assert (tmp_path / "study" / "journal.log").stat().st_size > 0


def test_model_auto_searches_both_classifiers_and_trains_and_reevaluates_the_chosen_one(
    candles: pl.DataFrame, tmp_path: Path
) -> None:
    """``TuningConfig.model='auto'``: the classifier is one more searched dimension; the best
    trial's is the one trained and recorded in its parameters, a re-evaluation or a replay's
    refit of those parameters trains it again, and the default keeps its study name."""
    from pipelines.replay import refit_known
    from tradeloop.research.model_choice import ModelChoice, model_options
    from tradeloop.research.steps import build_params, train_thresholds
    from tradeloop.research.tuning import scoring_of, study_name_of

    config = TuningConfig(n_trials=6, n_splits=3, max_drawdown=-1.0, policy=POLICY, model=ModelChoice(model="auto"))
    summary = train_thresholds(candles, config=config, exchange="coinbase", timeframe="4h", output_dir=tmp_path / "out")
    study = tune(candles, config=config, timeframe="4h", study_dir=tmp_path / "out" / "study")
    searched = {t.params["model"] for t in study.study.trials if "model" in t.params}
    assert searched <= {"logistic", "hgb"} and len(study.study.trials) == 6 and searched
    best = summary["best_params"]
    assert best["model"] in ("logistic", "hgb") and summary["model"] == best["model"]
    assert build_params(best, cost=config.cost) == build_params(
        {k: v for k, v in best.items() if k not in ("model", "features", "max_features")}, cost=config.cost
    )
    hgb = {**best, "model": "hgb", "features": "base", "max_features": None}
    assert model_options(hgb)[0]["model"] == "hgb" and model_options({})[0]["model"] == "logistic"
    at = int(candles["ts"].max())
    refit = refit_known(candles, hgb, at=at, policy=POLICY, embargo_ms=6 * 14_400_000, bar_ms=14_400_000, cost=0.002)
    assert refit.estimator.get_params()["model"] == "hgb"

    default = TuningConfig(n_trials=6, n_splits=3, max_drawdown=-1.0, policy=POLICY)
    assert "model" not in scoring_of(default) and "model" in scoring_of(config)
    assert study_name_of(default, timeframe="4h", version="v") != study_name_of(config, timeframe="4h", version="v")
