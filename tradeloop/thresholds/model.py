"""A trained threshold model: strategy + barrier config + ``AdaptiveThreshold``, saved safely.

On disk a model is a folder with ``model.json`` (every parameter and learned number, plain
JSON) and, when a classifier was trained, ``classifier.skops``. Loading never unpickles:
skops rebuilds only the scikit-learn/numpy types on an allow-list and refuses anything else.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import skops.io as sio

from tradeloop.errors import ModelError
from tradeloop.strategies import Strategy, get_strategy
from tradeloop.thresholds.dataset import META_FEATURES
from tradeloop.thresholds.estimator import AdaptiveThreshold
from tradeloop.thresholds.labels import BarrierConfig

MODEL_JSON, CLASSIFIER_FILE = "model.json", "classifier.skops"
FORMAT_VERSION = 1
_TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "scipy.")
_LEARNED = ("p_star_", "margin_", "threshold_", "base_rate_", "n_samples_", "fallback_", "n_features_in_",
            "validation_")


@dataclass
class ThresholdModel:
    """Everything the live engine needs to make the research decision on a new bar."""

    strategy: Strategy
    barriers: BarrierConfig
    estimator: AdaptiveThreshold
    trained_until: int  # ms: ts of the last bar whose label the model saw
    max_age_ms: int = 14 * 86_400_000
    features: tuple[str, ...] = META_FEATURES
    info: dict = field(default_factory=dict)

    def is_stale(self, now_ms: int | None = None) -> bool:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - self.trained_until > self.max_age_ms

    def probabilities(self, rows: pl.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in rows.columns]
        if missing:
            raise ModelError(f"rows lack model feature column(s) {missing}; compute them with meta_dataset")
        return self.estimator.predict_proba(rows.select(self.features).to_numpy())[:, 1]

    def bar(self, now_ms: int | None = None) -> float:
        """The probability a signal must beat: the threshold, or break-even p* once stale."""
        return self.estimator.p_star_ if self.is_stale(now_ms) else self.estimator.threshold_

    def accept(self, rows: pl.DataFrame, *, now_ms: int | None = None) -> np.ndarray:
        """Bool per row: act on this signal? A stale model falls back to the break-even p*."""
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
            "features": list(self.features),
            "info": self.info,
        }
        (directory / MODEL_JSON).write_text(json.dumps(doc, indent=2, sort_keys=True))
        if est.model_ is not None:
            sio.dump(est.model_, directory / CLASSIFIER_FILE)
        return directory

    @classmethod
    def load(cls, directory: Path) -> ThresholdModel:
        directory = Path(directory)
        try:
            doc = json.loads((directory / MODEL_JSON).read_text())
        except FileNotFoundError:
            raise ModelError(f"{directory} holds no {MODEL_JSON}: not a saved threshold model") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{directory / MODEL_JSON} is not valid JSON ({exc}); re-train or restore it") from None
        if doc.get("format") != FORMAT_VERSION:
            raise ModelError(f"{directory} has model format {doc.get('format')!r}; this tradeloop reads "
                             f"{FORMAT_VERSION}")
        params = dict(doc["estimator_params"])
        params.pop("classifier", None)
        params["margins"] = tuple(params["margins"])
        params["bounds"] = tuple(params["bounds"])
        est = AdaptiveThreshold(**params)
        for key, value in doc["learned"].items():
            setattr(est, key, value)
        est.classes_ = np.array([0, 1])
        est.model_ = _load_classifier(directory / CLASSIFIER_FILE) if not est.fallback_ else None
        strategy_doc = doc["strategy"]
        return cls(strategy=get_strategy(strategy_doc["name"], **strategy_doc["params"]),
                   barriers=BarrierConfig(**doc["barriers"]), estimator=est,
                   trained_until=int(doc["trained_until"]), max_age_ms=int(doc["max_age_ms"]),
                   features=tuple(doc["features"]), info=doc.get("info", {}))


def _load_classifier(path: Path):
    if not path.exists():
        raise ModelError(f"{path} is missing: the model was saved with a trained classifier")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the file is not a skops file
        raise ModelError(f"{path} is not a readable skops file ({exc}); restore it from the registry") from None
    refused = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if refused:
        raise ModelError(f"{path} contains types outside the allow-list: {refused}; refusing to load it")
    return sio.load(path, trusted=untrusted)


def _jsonable(value):
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
