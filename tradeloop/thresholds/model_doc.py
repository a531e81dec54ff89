"""The schema of a saved model's ``model.json``, and of the universe a model was trained on.

Rules:

- ``model.json`` is parsed with ``ModelDoc`` (frozen, unknown keys refused) before anything
  is built from it: a wrong shape, a missing key, an unknown strategy or feature, a
  number out of range is a ``ModelError`` that names the field, the value and the fix.
- Every number is finite (Python's json reads ``NaN`` and ``Infinity``; they are refused),
  ``trained_until`` is a bar time in ms between 2009-01-01 and 2100-01-01 and
  ``max_age_ms`` at most five years (so no model is "never stale"), features are listed
  once each, ``bounds`` are ``0 <= low < high <= 1`` and margins lie in [0, 1] (what
  ``AdaptiveThreshold`` itself accepts).
- ``Universe`` is what the model was trained on: exchange, timeframe and symbols. Models
  saved before it was recorded have none (``universe: null``); the live engine then
  cannot check it and says so in the reason it records.
- ``parse`` is the one place a pydantic ``ValidationError`` about a model or a champion
  manifest becomes a ``ModelError``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradeloop.errors import ModelError
from tradeloop.strategies import STRATEGIES
from tradeloop.thresholds.dataset import MODEL_FEATURES
from tradeloop.thresholds.labels import BarrierConfig

FORMAT_VERSION = 1

Doc = TypeVar("Doc", bound=BaseModel)


TRAINED_UNTIL_MIN_MS = 1_230_768_000_000  # 2009-01-01 UTC: before any crypto candle
TRAINED_UNTIL_MAX_MS = 4_102_444_800_000  # 2100-01-01 UTC
MAX_AGE_MAX_MS = 1826 * 86_400_000  # five years


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Universe(_Frozen):
    """Where a model was trained: one exchange, one timeframe, these symbols."""

    exchange: str = Field(min_length=1, max_length=64)
    timeframe: str = Field(min_length=1, max_length=16)
    symbols: tuple[str, ...] = Field(min_length=1)

    @field_validator("symbols")
    @classmethod
    def _symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(not s or s != s.strip() for s in value):
            raise ValueError(f"symbols must be non-empty names without surrounding spaces, got {list(value)}")
        return tuple(sorted(set(value)))

    def describe(self) -> str:
        return f"{self.exchange} {self.timeframe} {list(self.symbols)}"

    def mismatches(self, session: Universe) -> list[str]:
        """What keeps this model from serving ``session`` (empty when it can).

        The session may trade a subset of the model's symbols; a symbol the model never saw
        is a mismatch."""
        problems = []
        if self.exchange != session.exchange:
            problems.append(f"exchange {self.exchange!r} != session's {session.exchange!r}")
        if self.timeframe != session.timeframe:
            problems.append(f"timeframe {self.timeframe!r} != session's {session.timeframe!r}")
        unseen = sorted(set(session.symbols) - set(self.symbols))
        if unseen:
            problems.append(f"symbols {unseen} were not in its training universe {list(self.symbols)}")
        return problems


def _known_strategy(value: str) -> str:
    if value not in STRATEGIES:
        raise ValueError(f"unknown strategy {value!r}; known: {', '.join(sorted(STRATEGIES))}")
    return value


#: a strategy name tradeloop knows (model files and champion manifests)
KnownStrategy = Annotated[str, AfterValidator(_known_strategy)]


class StrategyDoc(_Frozen):
    name: KnownStrategy
    params: dict[str, Any] = Field(default_factory=dict)


class EstimatorParamsDoc(_Frozen):
    classifier: str | None = None  # repr of a custom classifier, for the record; never rebuilt
    model: Literal["logistic", "hgb"] = "logistic"  # absent in models saved before it existed
    max_features: int | None = Field(default=None, ge=1)
    calibration: Literal["sigmoid", "isotonic"]
    calibration_splits: int = Field(ge=2)
    margins: tuple[Annotated[float, Field(ge=0.0, le=1.0)], ...] = Field(min_length=1)
    validation_fraction: float = Field(gt=0.0, lt=1.0)
    min_samples: int = Field(ge=1)
    min_kept: int = Field(ge=1)
    cost: float = Field(ge=0.0, lt=1.0)
    bounds: tuple[float, float]
    random_state: int

    @field_validator("bounds")
    @classmethod
    def _bounds(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low < high <= 1.0:
            raise ValueError("need 0 <= low < high <= 1 (probabilities the threshold is clipped to)")
        return value


class LearnedDoc(_Frozen):
    p_star_: float = Field(ge=0.0, le=1.0)
    margin_: float = Field(ge=0.0, le=1.0)
    threshold_: float = Field(ge=0.0, le=1.0)
    base_rate_: float = Field(ge=0.0, le=1.0)
    n_samples_: int = Field(ge=0)
    fallback_: bool
    n_features_in_: int = Field(ge=1)
    validation_: dict[str, Any] = Field(default_factory=dict)
    support_: tuple[bool, ...] | None = None  # the features the classifier reads; None: all

    @model_validator(mode="after")
    def _support(self) -> LearnedDoc:
        if self.support_ is not None and (len(self.support_) != self.n_features_in_ or not any(self.support_)):
            raise ValueError(
                f"support_ has {len(self.support_)} entries ({sum(self.support_)} kept) for "
                f"n_features_in_={self.n_features_in_}: it must mark each feature, at least one kept"
            )
        return self


class ModelDoc(_Frozen):
    format: Literal[1]
    strategy: StrategyDoc
    barriers: BarrierConfig
    estimator_params: EstimatorParamsDoc
    learned: LearnedDoc
    trained_until: int
    max_age_ms: int = Field(gt=0, le=MAX_AGE_MAX_MS)
    on_stale: Literal["reduce_only", "break_even"] = "reduce_only"
    features: tuple[str, ...] = Field(min_length=1)
    universe: Universe | None = None
    info: dict[str, Any] = Field(default_factory=dict)

    @field_validator("trained_until")
    @classmethod
    def _trained_until(cls, value: int) -> int:
        if not TRAINED_UNTIL_MIN_MS <= value <= TRAINED_UNTIL_MAX_MS:
            raise ValueError(
                f"must be a bar time in ms since the epoch between 2009-01-01 ({TRAINED_UNTIL_MIN_MS}) "
                f"and 2100-01-01 ({TRAINED_UNTIL_MAX_MS}): the ts of the last bar the model saw"
            )
        return value

    @field_validator("features")
    @classmethod
    def _features(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in MODEL_FEATURES]
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; a model reads only {list(MODEL_FEATURES)}")
        repeated = sorted({f for f in value if value.count(f) > 1})
        if repeated:
            raise ValueError(f"feature(s) {repeated} listed more than once; list each feature at most once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ModelDoc:
        if self.learned.n_features_in_ != len(self.features):
            raise ValueError(
                f"learned.n_features_in_={self.learned.n_features_in_} but {len(self.features)} features are listed"
            )
        return self


def parse(cls: type[Doc], data: object, *, source: str, fix: str) -> Doc:
    """``cls`` validated from ``data``; every problem becomes one ``ModelError`` naming field and value."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ModelError(f"{source} is malformed: {problems(exc)}; {fix}") from None


def problems(exc: ValidationError, *, limit: int = 5) -> str:
    """'field.path = value: message' for the first ``limit`` errors of ``exc``."""
    parts = []
    for err in exc.errors()[:limit]:
        field = ".".join(str(p) for p in err["loc"]) or "(document)"
        shown = "missing" if err["type"] == "missing" else f"{_short(err.get('input'))}"
        parts.append(f"{field} = {shown}: {err['msg']}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _short(value: object, width: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."
