"""A trained threshold model: strategy + barrier config + ``AdaptiveThreshold``, saved safely.

On disk a model is a folder with ``model.json`` (every parameter and learned number, plain
JSON, parsed with the ``ModelDoc`` schema) and, when a classifier was trained,
``classifier.skops``. Loading never unpickles and never runs code from the files:
``safe_skops`` checks every type the classifier file names against an exact allow-list
before anything is built. ``universe`` records the exchange, timeframe and symbols the
model was trained on, so the live engine can refuse to trade it elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from tradeloop.errors import ConfigError, ModelError
from tradeloop.strategies import Strategy, get_strategy
from tradeloop.thresholds.dataset import META_FEATURES
from tradeloop.thresholds.estimator import AdaptiveThreshold
from tradeloop.thresholds.labels import BarrierConfig
from tradeloop.thresholds.model_doc import FORMAT_VERSION, ModelDoc, Universe, parse
from tradeloop.thresholds.safe_skops import dump_classifier, load_classifier

MODEL_JSON, CLASSIFIER_FILE = "model.json", "classifier.skops"
STALE_RULES = ("reduce_only", "break_even")
_LEARNED = (
    "p_star_",
    "margin_",
    "threshold_",
    "base_rate_",
    "n_samples_",
    "fallback_",
    "n_features_in_",
    "validation_",
    "support_",
)


@dataclass
class ThresholdModel:
    """Everything the live engine needs to make the research decision on a new bar."""

    strategy: Strategy
    barriers: BarrierConfig
    estimator: AdaptiveThreshold
    trained_until: int  # ms: ts of the last bar whose label the model saw
    max_age_ms: int = 14 * 86_400_000
    on_stale: str = "reduce_only"  # "reduce_only": no entry once stale; "break_even": entries need p*
    features: tuple[str, ...] = META_FEATURES
    info: dict = field(default_factory=dict)
    universe: Universe | None = None  # exchange, timeframe, symbols it was trained on

    def __post_init__(self) -> None:
        if self.on_stale not in STALE_RULES:
            raise ConfigError(f"on_stale={self.on_stale!r}: use one of {list(STALE_RULES)}")

    def is_stale(self, now_ms: int) -> bool:
        """True once ``now_ms`` (the decision time: the bar's ts) is more than ``max_age_ms``
        after the last bar the model saw. Never reads the wall clock."""
        return now_ms - self.trained_until > self.max_age_ms

    def stale_bar(self) -> float:
        """What an entry's probability must beat once the model is stale (``on_stale``)."""
        return self.estimator.p_star_ if self.on_stale == "break_even" else float("inf")

    def probabilities(self, rows: pl.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in rows.columns]
        if missing:
            raise ModelError(f"rows lack model feature column(s) {missing}; compute them with meta_dataset")
        return self.estimator.predict_proba(rows.select(self.features).to_numpy())[:, 1]

    def bar(self, now_ms: int) -> float:
        """The probability a signal must beat at ``now_ms``: the threshold, or ``stale_bar``."""
        return self.stale_bar() if self.is_stale(now_ms) else self.estimator.threshold_

    def bars(self, now_ms: np.ndarray) -> np.ndarray:
        """``bar`` for each decision time of ``now_ms`` (one per row of a backtest)."""
        now = np.asarray(now_ms, dtype=np.int64)
        return np.where(now - self.trained_until > self.max_age_ms, self.stale_bar(), self.estimator.threshold_)

    def accept(self, rows: pl.DataFrame, *, now_ms: int) -> np.ndarray:
        """Bool per row: act on this signal at ``now_ms``? A stale model follows ``on_stale``."""
        return self.probabilities(rows) > self.bar(now_ms)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        est = self.estimator
        doc = {
            "format": FORMAT_VERSION,
            "strategy": {"name": self.strategy.name, "params": self.strategy.model_dump(mode="json")},
            "barriers": self.barriers.model_dump(mode="json"),
            "estimator_params": _jsonable(est.get_params(deep=False)),
            "learned": {k: _jsonable(getattr(est, k)) for k in _LEARNED},
            "trained_until": self.trained_until,
            "max_age_ms": self.max_age_ms,
            "on_stale": self.on_stale,
            "features": list(self.features),
            "info": self.info,
            "universe": self.universe.model_dump(mode="json") if self.universe is not None else None,
        }
        parse(
            ModelDoc, doc, source=f"the model to save in {directory}", fix="fix the model's parameters before saving it"
        )  # never write what load would refuse
        if est.model_ is not None:
            dump_classifier(est.model_, directory / CLASSIFIER_FILE)
        (directory / MODEL_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: Path) -> ThresholdModel:
        """The model saved in ``directory``; ``ModelError`` names what is wrong with it."""
        directory = Path(directory)
        if not directory.is_dir():
            what = "is not a folder" if directory.exists() else "does not exist"
            raise ModelError(
                f"{directory} {what}: give a saved model folder (holding {MODEL_JSON} and "
                f"{CLASSIFIER_FILE}), e.g. the model/ folder a research run wrote"
            )
        path = directory / MODEL_JSON
        raw = read_json(
            path,
            fix="re-train the model or restore the artifact",
            missing=f"{directory} holds no {MODEL_JSON}: not a saved threshold model",
        )
        if isinstance(raw, dict) and raw.get("format") != FORMAT_VERSION:
            raise ModelError(
                f"{directory} has model format {raw.get('format')!r}; this tradeloop reads "
                f"{FORMAT_VERSION}: re-train the model with this version"
            )
        doc = parse(ModelDoc, raw, source=str(path), fix="re-train the model or restore the artifact")
        params = doc.estimator_params.model_dump(exclude={"classifier"})
        est = AdaptiveThreshold(**params)
        for key, value in doc.learned.model_dump().items():
            setattr(est, key, value)
        est.classes_ = np.array([0, 1])
        support = doc.learned.support_  # None: saved before selection existed, every feature
        est.support_ = np.ones(est.n_features_in_, dtype=bool) if support is None else np.asarray(support, dtype=bool)
        est.model_ = (
            None if est.fallback_ else load_classifier(directory / CLASSIFIER_FILE, n_features=int(est.support_.sum()))
        )
        try:
            strategy = get_strategy(doc.strategy.name, **doc.strategy.params)
        except (ConfigError, ValueError) as exc:
            raise ModelError(
                f"{path}: strategy.params = {doc.strategy.params} do not build a "
                f"{doc.strategy.name} ({exc}); re-train the model"
            ) from None
        return cls(
            strategy=strategy,
            barriers=doc.barriers,
            estimator=est,
            trained_until=doc.trained_until,
            max_age_ms=doc.max_age_ms,
            on_stale=doc.on_stale,
            features=doc.features,
            info=doc.info,
            universe=doc.universe,
        )


MAX_JSON_BYTES = 16 * 2**20  # a model.json or a manifest is a few KB


def read_json(path: Path, *, fix: str, missing: str | None = None) -> object:
    """``path`` parsed as JSON; every way it can fail is a ``ModelError`` naming the file and ``fix``.

    ``missing``: the message for a file that does not exist (None: that is an error too)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise ModelError(missing or f"{path} is missing; {fix}") from None
    except OSError as exc:  # a folder in its place, permissions, a broken disk
        raise ModelError(f"{path} cannot be read ({type(exc).__name__}: {exc.strerror or exc}); {fix}") from None
    if len(data) > MAX_JSON_BYTES:
        raise ModelError(f"{path} is larger than {MAX_JSON_BYTES:,} bytes: not a file tradeloop wrote; {fix}")
    try:
        return json.loads(data)
    except RecursionError:
        raise ModelError(f"{path} is nested too deeply to be a file tradeloop wrote; {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); {fix}") from None


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return repr(value)
