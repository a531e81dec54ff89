"""AdaptiveThreshold: break-even p*, meta-labeling that learns, fallback, persistence."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone

from tradeloop.errors import ConfigError, ModelError
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import (
    META_FEATURES,
    AdaptiveThreshold,
    BarrierConfig,
    ThresholdModel,
    break_even_probability,
)


def synthetic_events(n: int = 600, seed: int = 3):
    """Feature 0 raises the win probability; wins pay 2%, losses cost 1%."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(META_FEATURES)))
    p = 1.0 / (1.0 + np.exp(-2.0 * X[:, 0]))
    win = rng.random(n) < p
    returns = np.where(win, 0.02, -0.01)
    ts = np.arange(n, dtype=np.int64) * 10
    return X, (returns - 0.002 > 0).astype(int), returns, ts, ts + 5


def test_break_even_probability_is_the_textbook_formula() -> None:
    # W = 4%, L = 2%, c = 0.2%: a trade pays when p*4 - (1-p)*2 - 0.2 > 0, i.e. p > 2.2/6
    assert break_even_probability(0.04, 0.02, 0.002) == pytest.approx(2.2 / 6)
    with pytest.raises(ConfigError, match="win > 0"):
        break_even_probability(0.0, 0.02, 0.0)


def test_fit_learns_which_signals_pay_and_thresholds_above_break_even() -> None:
    X, y, r, ts, t1 = synthetic_events()
    est = AdaptiveThreshold(cost=0.002)
    assert est.fit(X, y, returns=r, ts=ts, t1=t1) is est
    assert est.p_star_ == pytest.approx((0.01 + 0.002) / (0.02 + 0.01))
    assert est.threshold_ >= est.p_star_ and est.margin_ in est.margins
    low, high = np.zeros((1, X.shape[1])), np.zeros((1, X.shape[1]))
    low[0, 0], high[0, 0] = -2.0, 2.0
    assert est.predict_proba(high)[0, 1] > 0.8 > 0.2 > est.predict_proba(low)[0, 1]
    assert est.predict(high)[0] == 1 and est.predict(low)[0] == 0
    taken = est.predict(X) == 1
    assert r[taken].mean() > r.mean()  # acting only on accepted signals pays more per trade


def test_fit_is_deterministic_and_clone_keeps_params() -> None:
    X, y, r, ts, t1 = synthetic_events()
    a = AdaptiveThreshold(random_state=7).fit(X, y, returns=r, ts=ts, t1=t1)
    b = clone(a).fit(X, y, returns=r, ts=ts, t1=t1)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.threshold_ == b.threshold_


def test_too_few_events_fall_back_to_static_break_even() -> None:
    X, y, r, ts, t1 = synthetic_events(n=30)
    est = AdaptiveThreshold(min_samples=60).fit(X, y, returns=r)
    assert est.fallback_ and est.model_ is None and est.threshold_ == pytest.approx(est.p_star_)
    np.testing.assert_allclose(est.predict_proba(X)[:, 1], y.mean())  # the base rate, for every row


@pytest.mark.parametrize(
    ("param", "value", "needle"),
    [
        ("calibration", "magic", "calibration='magic'"),
        ("bounds", (0.9, 0.1), "bounds=(0.9, 0.1)"),
        ("validation_fraction", 1.5, "validation_fraction=1.5"),
        ("margins", (), "margins=()"),
    ],
)
def test_bad_parameters_name_the_field(param: str, value, needle: str) -> None:
    X, y, r, *_ = synthetic_events(n=100)
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        AdaptiveThreshold(**{param: value}).fit(X, y, returns=r)


def test_wrong_feature_count_is_refused() -> None:
    X, y, r, ts, t1 = synthetic_events()
    est = AdaptiveThreshold().fit(X, y, returns=r)
    with pytest.raises(ModelError, match="expected 7 features"):
        est.predict_proba(X[:, :3])


def _model() -> tuple[ThresholdModel, np.ndarray]:
    X, y, r, ts, t1 = synthetic_events()
    est = AdaptiveThreshold().fit(X, y, returns=r, ts=ts, t1=t1)
    return ThresholdModel(
        strategy=SmaCross(fast=5, slow=20), barriers=BarrierConfig(), estimator=est, trained_until=1_700_000_000_000
    ), X


def test_model_round_trip_gives_the_same_decisions(tmp_path) -> None:
    model, X = _model()
    loaded = ThresholdModel.load(model.save(tmp_path / "m"))
    np.testing.assert_array_equal(loaded.estimator.predict_proba(X), model.estimator.predict_proba(X))
    assert loaded.estimator.threshold_ == model.estimator.threshold_
    assert loaded.strategy == model.strategy and loaded.trained_until == 1_700_000_000_000


def test_stale_model_falls_back_to_break_even(tmp_path) -> None:
    model, _ = _model()
    assert not model.is_stale(now_ms=model.trained_until + 1)
    assert model.is_stale(now_ms=model.trained_until + model.max_age_ms + 1)


def test_classifier_file_with_foreign_types_is_refused(tmp_path) -> None:
    model, _ = _model()
    folder = model.save(tmp_path / "m")
    sio.dump(collections.Counter(a=1), folder / "classifier.skops")  # not sklearn/numpy: never built
    with pytest.raises(ModelError, match="outside the allow-list"):
        ThresholdModel.load(folder)


def test_damaged_model_json_is_a_clear_error(tmp_path) -> None:
    model, _ = _model()
    folder = model.save(tmp_path / "m")
    (folder / "model.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        ThresholdModel.load(folder)
    doc = {"format": 99}
    (folder / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="format 99"):
        ThresholdModel.load(folder)


def test_calibration_folds_are_purged_like_the_walk_forward() -> None:
    """No calibration fold trains on an event whose label reaches into the fold it calibrates."""
    from tradeloop.thresholds.estimator import purged_calibration_splits

    rng = np.random.default_rng(7)
    ts = np.sort(rng.choice(np.arange(0, 10_000, 5), 400, replace=False)).astype(np.int64)
    t1 = ts + rng.integers(100, 400, ts.size)  # labels that overlap the next events
    y = rng.integers(0, 2, ts.size)
    splits = purged_calibration_splits(y, ts, t1, n_splits=3)
    assert len(splits) == 3
    for train, test in splits:
        start = ts[test].min()
        assert (t1[train] < start).all() and (ts[train] < start).all()
        dropped = np.flatnonzero((ts < start) & (t1 >= start))
        assert dropped.size > 0 and not np.isin(dropped, train).any()  # overlapping labels purged
    est = AdaptiveThreshold(min_samples=60).fit(
        rng.normal(size=(ts.size, 3)), y, returns=rng.normal(0, 0.02, ts.size), ts=ts, t1=t1
    )
    folds = est.model_.cv
    assert [tuple(map(len, f)) for f in folds] == [tuple(map(len, f)) for f in splits]
