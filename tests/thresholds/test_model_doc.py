"""model.json is parsed with a schema: every malformed field is a ModelError naming it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradeloop.errors import ModelError
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel, Universe


def saved(tmp_path, *, universe: Universe | None = None):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(200, len(META_FEATURES)))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    est = AdaptiveThreshold().fit(X, y, returns=np.where(y == 1, 0.02, -0.01))
    return ThresholdModel(
        strategy=SmaCross(fast=7, slow=30),
        barriers=BarrierConfig(),
        estimator=est,
        trained_until=1_700_000_000_000,
        universe=universe,
    ).save(tmp_path / "model")


def test_the_universe_round_trips_and_old_models_have_none(tmp_path) -> None:
    universe = Universe(exchange="coinbase", timeframe="4h", symbols=("ETH-USD", "BTC-USD"))
    loaded = ThresholdModel.load(saved(tmp_path / "a", universe=universe))
    assert loaded.universe == universe and loaded.universe.symbols == ("BTC-USD", "ETH-USD")
    folder = saved(tmp_path / "b")
    doc = json.loads((folder / "model.json").read_text())
    del doc["universe"]  # written before the universe was recorded
    (folder / "model.json").write_text(json.dumps(doc))
    assert ThresholdModel.load(folder).universe is None


def _set(doc: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    for key in parents:
        doc = doc[key]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()

CASES = [
    ("strategy", _DELETE, r"strategy = missing: Field required"),
    ("strategy.name", "nope", r"strategy.name = 'nope': Value error, unknown strategy 'nope'; known: breakout"),
    ("strategy", "sma_cross", r"strategy = 'sma_cross': Input should be a valid dictionary"),
    ("strategy.params", {"fast": 50, "slow": 10}, r"strategy.params = .* do not build a sma_cross"),
    ("learned.threshold_", "high", r"learned.threshold_ = 'high': Input should be a valid number"),
    ("learned.p_star_", 7.5, r"learned.p_star_ = 7.5: Input should be less than or equal to 1"),
    ("learned.fallback_", _DELETE, r"learned.fallback_ = missing"),
    ("estimator_params.calibration", "magic", r"estimator_params.calibration = 'magic'"),
    ("features", ["score", "ret_1", "tomorrow"], r"unknown feature\(s\) \['tomorrow'\]"),
    ("features", ["score"], r"learned.n_features_in_=7 but 1 features are listed"),
    ("barriers.profit_mult", -1, r"barriers.profit_mult = -1: Input should be greater than 0"),
    ("universe", {"exchange": "", "timeframe": "4h", "symbols": []}, r"universe.exchange = ''.*universe.symbols"),
    ("max_age_ms", 0, r"max_age_ms = 0: Input should be greater than 0"),
    ("surprise", 1, r"surprise = 1: Extra inputs are not permitted"),
    # never stale, duplicated or non-finite: refused like any other malformed field
    (
        "trained_until",
        10**30,
        r"trained_until = 1000000000000000000000000000000: Value error, must be a bar time "
        r"in ms since the epoch between 2009-01-01 \(1230768000000\) and 2100-01-01 \(4102444800000\)",
    ),
    ("trained_until", 1_700_000_000, r"trained_until = 1700000000: Value error, must be a bar time in ms"),
    ("max_age_ms", 10**15, r"max_age_ms = 1000000000000000: Input should be less than or equal to 157766400000"),
    (
        "features",
        ["score", "score", "rsi_14", "vol_20", "zscore_20", "volume_ratio_20", "volume_zscore_20"],
        r"features = .*: Value error, feature\(s\) \['score'\] listed more than once",
    ),
    ("estimator_params.cost", float("inf"), r"estimator_params.cost = inf: Input should be a finite number"),
    ("estimator_params.margins", [0.0, float("nan")], r"estimator_params.margins.1 = nan: Input should be a finite"),
    ("estimator_params.margins", [0.0, 2.0], r"estimator_params.margins.1 = 2.0: Input should be less than or equal"),
    ("estimator_params.bounds", [float("nan"), 0.9], r"estimator_params.bounds.0 = nan: Input should be a finite"),
    (
        "estimator_params.bounds",
        [0.9, 0.1],
        r"estimator_params.bounds = \[0.9, 0.1\]: Value error, need 0 <= low < "
        r"high <= 1",
    ),
    ("estimator_params.bounds", [0.1, 1.5], r"estimator_params.bounds = .*need 0 <= low < high <= 1"),
    ("learned.threshold_", float("nan"), r"learned.threshold_ = nan: Input should be a finite number"),
    ("barriers.profit_mult", float("inf"), r"barriers.profit_mult = inf: Input should be a finite number"),
]


@pytest.mark.parametrize(("field", "value", "message"), CASES, ids=[c[0] + "-" + repr(c[1])[:12] for c in CASES])
def test_a_malformed_model_json_names_the_field(tmp_path, field: str, value: object, message: str) -> None:
    folder = saved(tmp_path)
    doc = json.loads((folder / "model.json").read_text())
    _set(doc, field, value)
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=message) as caught:
        ThresholdModel.load(folder)
    assert "re-train the model" in str(caught.value)


def test_a_model_json_that_is_not_an_object_is_refused(tmp_path) -> None:
    folder = saved(tmp_path)
    (folder / "model.json").write_text("[1, 2]")
    with pytest.raises(ModelError, match=r"\(document\) = \[1, 2\]: Input should be a valid dictionary"):
        ThresholdModel.load(folder)


def test_a_model_that_would_not_load_is_never_saved(tmp_path) -> None:
    est = AdaptiveThreshold().fit(np.zeros((5, 7)), np.zeros(5, dtype=int), returns=np.full(5, -0.01))
    model = ThresholdModel(
        strategy=SmaCross(),
        barriers=BarrierConfig(),
        estimator=est,
        trained_until=1_700_000_000_000,
        features=("score", "not_a_feature"),
    )
    with pytest.raises(ModelError, match=r"unknown feature\(s\) \['not_a_feature'\]"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "model.json").exists()
