"""Which classifier the threshold model uses, chosen by the walk-forward and the promotion gate.

Rules:

- ``ModelChoice.model``: ``"logistic"`` (the default), ``"hgb"`` (boosted trees) or
  ``"auto"``: both are walked forward on the same folds under the same retrain policy
  (``walk_forward``, what live would have traded) and judged by the same gate
  (``evaluate_gate``), the two counted as two trials for the deflated Sharpe ratio and PBO.
- ``"auto"`` keeps the simpler model unless the other one does better out of sample: a model
  that passes the gate beats one that fails it, and among models that pass (or, when none
  does, among all) the boosted trees are chosen only when their out-of-sample Sharpe per bar
  exceeds the logistic one's by more than the gate's ``champion_tolerance``, the margin a
  challenger needs over a champion.
- ``ModelChoice.features``: ``"base"`` (``META_FEATURES``) or ``"candidates"`` (with the
  engineered features of ``tradeloop.features.candidates``); ``max_features`` keeps the most
  informative on each refit's own training events (``AdaptiveThreshold``), so selection never
  sees an out-of-sample row.
- In the pipeline (``TuningConfig.model``), ``"auto"`` is one more dimension of the optuna
  search, walked forward like the strategy's parameters: the best trial's classifier is the
  one trained, every trial counts for the deflated Sharpe ratio and PBO, and the gate judges
  the result. A parameter dict (a trial's, a champion's lineage) holds the options under
  :data:`MODEL_KEYS` (none: the logistic model on the base features, the default), so a
  re-evaluation or a replay's refit trains what the champion is (:func:`model_options`).
- Every outcome reports its out-of-sample figures: Sharpe (annualised), deflated Sharpe, total
  return, maximum drawdown, Brier score of the entries' probabilities against their labels,
  hit rate of the entries taken, and the seconds its walk-forward took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tradeloop.backtest import BacktestConfig
from tradeloop.evaluation import PurgedWalkForward
from tradeloop.research.gate import GateConfig, GateReport, evaluate_gate
from tradeloop.research.policy import RetrainPolicy
from tradeloop.research.walkforward import WalkForwardResult, walk_forward
from tradeloop.strategies import Strategy
from tradeloop.thresholds import BarrierConfig, meta_dataset
from tradeloop.thresholds.dataset import CANDIDATE_META_FEATURES, META_FEATURES
from tradeloop.thresholds.estimator import MODEL_KINDS


class ModelChoice(BaseModel):
    """The threshold model's classifier and the features it chooses from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["logistic", "hgb", "auto"] = "logistic"
    features: Literal["base", "candidates"] = "base"
    max_features: int | None = Field(
        default=None, ge=1, description="keep this many features per refit (mutual information); None: all"
    )

    @model_validator(mode="after")
    def _fits(self) -> ModelChoice:
        available = len(self.feature_names)
        if self.max_features is not None and self.max_features > available:
            raise ValueError(
                f"max_features={self.max_features} but features={self.features!r} offers {available}: "
                f"set max_features to at most {available}, or features='candidates'"
            )
        return self

    @property
    def kinds(self) -> tuple[str, ...]:
        """The classifiers to walk forward, the simplest first."""
        return MODEL_KINDS if self.model == "auto" else (self.model,)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return CANDIDATE_META_FEATURES if self.features == "candidates" else META_FEATURES

    def estimator_params(self, kind: str) -> dict:
        return {"model": kind, "max_features": self.max_features}

    def params_of(self, kind: str) -> dict:
        """What a parameter dict records of ``kind`` under this choice (nothing for the default)."""
        if self == ModelChoice():
            return {}
        return {"model": kind, "features": self.features, "max_features": self.max_features}


#: the keys of a parameter dict that hold the model's options (``ModelChoice.params_of``)
MODEL_KEYS = ("model", "features", "max_features")


def model_options(params: Mapping[str, object]) -> tuple[dict, tuple[str, ...]]:
    """``(estimator_params, features)`` a refit of ``params`` trains with: the options its
    :data:`MODEL_KEYS` record, else the default's (the logistic model on the base features)."""
    choice = ModelChoice(
        model=params.get("model", "logistic"),
        features=params.get("features", "base"),
        max_features=params.get("max_features"),
    )
    return choice.estimator_params(choice.kinds[0]), choice.feature_names


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelOutcome:
    """One classifier's out-of-sample evidence."""

    kind: str
    result: WalkForwardResult
    gate: GateReport
    sharpe_annualised: float
    deflated_sharpe: float
    total_return: float
    max_drawdown: float
    brier: float  # entries' probabilities against their labels (NaN: no entry decided)
    hit_rate: float  # share of the entries taken whose label was a win (NaN: none taken)
    entries_taken: int
    seconds: float

    def row(self) -> dict[str, object]:
        return {
            "model": self.kind,
            "gate": "pass" if self.gate.passed else "fail",
            "sharpe_annual": self.sharpe_annualised,
            "deflated_sharpe": self.deflated_sharpe,
            "return": self.total_return,
            "max_drawdown": self.max_drawdown,
            "hit_rate": self.hit_rate,
            "brier": self.brier,
            "taken": self.entries_taken,
            "seconds": self.seconds,
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelSelection:
    chosen: str
    outcomes: tuple[ModelOutcome, ...]

    def outcome(self, kind: str) -> ModelOutcome:
        return next(o for o in self.outcomes if o.kind == kind)

    def table(self) -> pl.DataFrame:
        return pl.DataFrame([o.row() for o in self.outcomes])


def choose(outcomes: tuple[ModelOutcome, ...], *, tolerance: float) -> str:
    """The model ``"auto"`` picks (see the module's rules); ``outcomes`` simplest first."""
    passing = [o for o in outcomes if o.gate.passed] or list(outcomes)
    chosen = passing[0]
    for other in passing[1:]:
        if other.result.sharpe > chosen.result.sharpe + tolerance:
            chosen = other
    return chosen.kind


def compare_models(
    candles: pl.DataFrame,
    strategy: Strategy,
    barriers: BarrierConfig,
    *,
    choice: ModelChoice,
    timeframe: str,
    splitter: PurgedWalkForward,
    backtest: BacktestConfig,
    policy: RetrainPolicy,
    periods_per_year: float,
    gate: GateConfig = GateConfig(),
) -> ModelSelection:
    """Walk every classifier of ``choice`` forward on the same folds, gate each, pick one."""
    events = meta_dataset(candles, strategy, barriers=barriers, features=choice.feature_names)
    runs: list[tuple[str, WalkForwardResult, float]] = []
    for kind in choice.kinds:
        started = time.perf_counter()
        result = walk_forward(
            candles,
            strategy,
            barriers,
            timeframe=timeframe,
            splitter=splitter,
            backtest=backtest,
            policy=policy,
            estimator_params=choice.estimator_params(kind),
            features=choice.feature_names,
        )
        runs.append((kind, result, time.perf_counter() - started))
    sharpes = np.array([r.sharpe for _, r, _ in runs])
    bars = min(r.returns.size for _, r, _ in runs)
    matrix = np.column_stack([r.returns[:bars] for _, r, _ in runs])
    outcomes = []
    for kind, result, seconds in runs:
        report = evaluate_gate(
            candidate_returns=result.returns,
            folds=[{"trades": f.test_trades} for f in result.folds],
            trial_sharpes=sharpes,
            returns_matrix=matrix,
            champion_sharpe=None,
            periods_per_year=periods_per_year,
            config=gate,
        )
        brier, hit, taken = _entry_scores(result, events)
        outcomes.append(
            ModelOutcome(
                kind=kind,
                result=result,
                gate=report,
                sharpe_annualised=result.sharpe * math.sqrt(periods_per_year),
                deflated_sharpe=next(c.value for c in report.checks if c.name == "deflated_sharpe"),
                total_return=float(np.prod(1.0 + result.returns) - 1.0),
                max_drawdown=result.max_drawdown,
                brier=brier,
                hit_rate=hit,
                entries_taken=taken,
                seconds=seconds,
            )
        )
    done = tuple(outcomes)
    return ModelSelection(chosen=choose(done, tolerance=gate.champion_tolerance), outcomes=done)


def _entry_scores(result: WalkForwardResult, events: pl.DataFrame) -> tuple[float, float, int]:
    """(Brier score, hit rate of the entries taken, entries taken) of the out-of-sample entries."""
    if result.entries is None or result.entries.is_empty():
        return math.nan, math.nan, 0
    scored = result.entries.join(events.select("symbol", "ts", "label"), on=["symbol", "ts"], how="inner")
    if scored.is_empty():
        return math.nan, math.nan, 0
    proba, label = scored["proba"].to_numpy(), scored["label"].to_numpy().astype(np.float64)
    brier = float(np.mean((proba - label) ** 2))
    taken = scored["accepted"].to_numpy()
    hit = float(label[taken].mean()) if taken.any() else math.nan
    return brier, hit, int(taken.sum())
