"""Feature selection inside the walk-forward sees only each refit's training events, and
``ModelChoice`` validates itself and picks a model by the gate's rule."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from tradeloop.errors import ConfigError
from tradeloop.evaluation import PurgedWalkForward
from tradeloop.research.gate import GateCheck, GateConfig, GateReport
from tradeloop.research.model_choice import ModelChoice, ModelOutcome, choose
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.walkforward import WalkForwardResult, events_known_at, fit_threshold, refit_at
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import BarrierConfig, meta_dataset
from tradeloop.thresholds.dataset import CANDIDATE_META_FEATURES

BAR_MS = 14_400_000  # 4h
EMBARGO_MS = 6 * BAR_MS
POISONED = "upvolume_share_24"


@pytest.fixture(scope="module")
def events(btc_4h: pl.DataFrame, eth_4h: pl.DataFrame) -> pl.DataFrame:
    candles = pl.concat([btc_4h.with_columns(symbol=pl.lit("BTC")), eth_4h.with_columns(symbol=pl.lit("ETH"))])
    return meta_dataset(candles.sort("symbol", "ts"), SmaCross(fast=10, slow=40), features=CANDIDATE_META_FEATURES)


def test_selection_inside_the_walk_forward_never_sees_the_test_fold(events: pl.DataFrame) -> None:
    """Poison a feature in the test fold's events so that it gives the label away: the refit the
    walk-forward makes at the fold's start selects the same features, learns the same numbers."""
    policy = RetrainPolicy()
    fold = list(PurgedWalkForward(n_splits=4, embargo_ms=EMBARGO_MS).split(events["ts"], events["t1"]))[-1]
    at = policy.last_retrain_time(fold.test_start)
    test_rows = pl.col("ts") >= at
    poisoned = events.with_columns(
        pl.when(test_rows).then(pl.col("label") * 10.0).otherwise(pl.col(POISONED)).alias(POISONED)
    )
    assert poisoned.filter(test_rows).height >= 50
    params = {"estimator_params": {"max_features": 5}, "features": CANDIDATE_META_FEATURES}

    def refit(frame: pl.DataFrame):
        return refit_at(
            frame,
            SmaCross(fast=10, slow=40),
            BarrierConfig(),
            at=at,
            policy=policy,
            embargo_ms=EMBARGO_MS,
            bar_ms=BAR_MS,
            **params,
        ).estimator

    clean, dirty = refit(events), refit(poisoned)
    assert not clean.fallback_
    np.testing.assert_array_equal(dirty.support_, clean.support_)
    assert dirty.threshold_ == pytest.approx(clean.threshold_, abs=0.0)
    X = events.select(CANDIDATE_META_FEATURES).to_numpy()
    np.testing.assert_array_equal(dirty.predict_proba(X), clean.predict_proba(X))
    # the poison is strong: a selection that saw the test rows would keep that feature
    column = CANDIDATE_META_FEATURES.index(POISONED)
    leaky = fit_threshold(
        poisoned.filter(pl.col("ts") < fold.test_end), SmaCross(fast=10, slow=40), BarrierConfig(), **params
    )
    assert leaky.estimator.support_[column] and not clean.support_[column]
    assert events_known_at(events, at, policy=policy, embargo_ms=EMBARGO_MS)["ts"].max() < at


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"model": "forest"}, "model"),
        ({"max_features": 9}, "max_features=9 but features='base' offers 7"),
        ({"max_features": 0}, "max_features"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_model_choice_names_the_field(values: dict, needle: str) -> None:
    with pytest.raises((ConfigError, ValueError), match=needle):
        ModelChoice(**values)


def test_auto_walks_both_models_and_the_choice_is_frozen() -> None:
    choice = ModelChoice(model="auto", features="candidates", max_features=8)
    assert choice.kinds == ("logistic", "hgb") and ModelChoice().kinds == ("logistic",)
    assert choice.estimator_params("hgb") == {"model": "hgb", "max_features": 8}
    with pytest.raises(ValueError, match="frozen"):
        choice.model = "hgb"  # type: ignore[misc]


def outcome(kind: str, *, mean: float, passed: bool) -> ModelOutcome:
    returns = mean + np.resize([0.01, -0.01], 200)  # per-bar Sharpe = mean / 0.01
    result = WalkForwardResult(folds=(), ts=np.arange(200), returns=returns, events=0)
    gate = GateReport((GateCheck("oos_sharpe_per_bar", 0.0, 0.0, passed, ""),))
    nan = float("nan")
    return ModelOutcome(
        kind=kind,
        result=result,
        gate=gate,
        sharpe_annualised=nan,
        deflated_sharpe=nan,
        total_return=nan,
        max_drawdown=nan,
        brier=nan,
        hit_rate=nan,
        entries_taken=0,
        seconds=0.0,
    )


@pytest.mark.parametrize(
    ("logistic", "hgb", "chosen"),
    [
        ((0.001, True), (0.002, True), "hgb"),  # Sharpe 0.1 vs 0.2 per bar: beats it by more than the tolerance
        ((0.001, True), (0.00101, True), "logistic"),  # within the tolerance: the simpler model stays
        ((0.001, True), (0.005, False), "logistic"),  # the gate comes first
        ((-0.001, False), (0.001, False), "hgb"),  # none passes: the same rule among all
    ],
)
def test_auto_keeps_the_simpler_model_unless_the_other_does_better(logistic, hgb, chosen) -> None:
    outcomes = (outcome("logistic", mean=logistic[0], passed=logistic[1]), outcome("hgb", mean=hgb[0], passed=hgb[1]))
    assert choose(outcomes, tolerance=GateConfig().champion_tolerance) == chosen
