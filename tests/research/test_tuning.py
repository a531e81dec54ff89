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
