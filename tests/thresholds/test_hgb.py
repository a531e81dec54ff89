"""The boosted-trees classifier (``AdaptiveThreshold(model="hgb")``): scikit-learn's conventions,
what it learns that the logistic model cannot, and its safe round trip through the allow-list."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.base import clone

from tests.thresholds.hostile import with_payload_inside
from tradeloop.errors import ConfigError, ModelError
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import AdaptiveThreshold, BarrierConfig, ThresholdModel
from tradeloop.thresholds.dataset import CANDIDATE_META_FEATURES
from tradeloop.thresholds.safe_skops import ALLOWED_TYPES

N_FEATURES = len(CANDIDATE_META_FEATURES)


def interaction_events(n: int = 800, seed: int = 5):
    """Acting pays when features 0 and 1 have the same sign (an interaction no linear model sees)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURES))
    p = np.where(X[:, 0] * X[:, 1] > 0, 0.8, 0.2)
    win = rng.random(n) < p
    returns = np.where(win, 0.02, -0.01)
    ts = np.arange(n, dtype=np.int64) * 10
    return X, (returns - 0.002 > 0).astype(int), returns, ts, ts + 5


def brier(est: AdaptiveThreshold, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((est.predict_proba(X)[:, 1] - y) ** 2))


def test_hgb_follows_scikit_learn_conventions() -> None:
    X, y, r, ts, t1 = interaction_events()
    est = AdaptiveThreshold(model="hgb", max_features=6, random_state=2)
    before = set(vars(est))
    assert est.get_params()["model"] == "hgb" and est.get_params()["max_features"] == 6
    assert est.fit(X, y, returns=r, ts=ts, t1=t1) is est
    learned = set(vars(est)) - before
    assert learned and all(name.endswith("_") for name in learned), sorted(learned)
    twin = clone(est)
    assert not hasattr(twin, "model_") and twin.get_params() == est.get_params()
    np.testing.assert_array_equal(twin.fit(X, y, returns=r, ts=ts, t1=t1).predict_proba(X), est.predict_proba(X))


def test_hgb_learns_an_interaction_the_logistic_model_cannot() -> None:
    X, y, r, ts, t1 = interaction_events()
    Xt, yt, *_ = interaction_events(seed=6)  # unseen events of the same process
    trees = AdaptiveThreshold(model="hgb").fit(X, y, returns=r, ts=ts, t1=t1)
    linear = AdaptiveThreshold(model="logistic").fit(X, y, returns=r, ts=ts, t1=t1)
    assert brier(trees, Xt, yt) < brier(linear, Xt, yt) - 0.02
    assert brier(linear, Xt, yt) > 0.24  # the logistic model is left near the base rate


def test_selection_keeps_the_informative_features() -> None:
    X, y, r, ts, t1 = interaction_events()
    X[:, 5] = y + np.random.default_rng(0).normal(scale=0.5, size=len(y))  # a strong single feature
    est = AdaptiveThreshold(model="hgb", max_features=3).fit(X, y, returns=r, ts=ts, t1=t1)
    assert est.support_.sum() == 3 and est.support_[5]
    with pytest.raises(ModelError, match=f"expected {N_FEATURES} features"):
        est.predict_proba(X[:, :3])


@pytest.mark.parametrize(
    ("param", "value", "needle"), [("model", "forest", "model='forest'"), ("max_features", 0, "max_features=0")]
)
def test_bad_model_options_name_the_field(param: str, value, needle: str) -> None:
    X, y, r, ts, t1 = interaction_events(n=200)
    with pytest.raises(ConfigError, match=needle):
        AdaptiveThreshold(**{param: value}).fit(X, y, returns=r, ts=ts, t1=t1)


@pytest.fixture(scope="module")
def hgb_model() -> ThresholdModel:
    X, y, r, ts, t1 = interaction_events()
    est = AdaptiveThreshold(model="hgb", max_features=5).fit(X, y, returns=r, ts=ts, t1=t1)
    return ThresholdModel(
        strategy=SmaCross(),
        barriers=BarrierConfig(),
        estimator=est,
        trained_until=1_700_000_000_000,
        features=CANDIDATE_META_FEATURES,
    )


def saved_hgb(tmp_path, model: ThresholdModel) -> tuple[ThresholdModel, object]:
    return model, model.save(tmp_path / "model")


def test_an_hgb_model_with_selected_features_loads_through_the_allow_list(tmp_path, hgb_model) -> None:
    model, folder = saved_hgb(tmp_path, hgb_model)
    types = set(sio.get_untrusted_types(data=(folder / "classifier.skops").read_bytes()))
    assert "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor" in types <= ALLOWED_TYPES
    loaded = ThresholdModel.load(folder)
    assert loaded.estimator.model == "hgb" and loaded.features == CANDIDATE_META_FEATURES
    np.testing.assert_array_equal(loaded.estimator.support_, model.estimator.support_)
    assert loaded.estimator.model_.n_features_in_ == 5
    X = np.random.default_rng(9).normal(size=(50, N_FEATURES))
    np.testing.assert_array_equal(loaded.estimator.predict_proba(X), model.estimator.predict_proba(X))


def test_an_unlisted_type_inside_an_hgb_file_is_still_refused(tmp_path, hgb_model) -> None:
    marker = tmp_path / "pwned"
    _, folder = saved_hgb(tmp_path, hgb_model)
    path = folder / "classifier.skops"
    path.write_bytes(with_payload_inside(path.read_bytes(), marker))
    with pytest.raises(ModelError, match=r"outside the allow-list: \['builtins.exec'\]"):
        ThresholdModel.load(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("left", 10**6, "left child is not a later node"),
        ("right", 0, "right child is not a later node"),
        ("feature_idx", 99, "reads a feature outside"),
    ],
)
def test_a_tree_whose_nodes_point_astray_is_refused_before_it_predicts(
    tmp_path, hgb_model, field, value, needle
) -> None:
    """Allowed types, crafted numbers: compiled prediction would read outside the node table
    (or loop) on the first bar; the load refuses it instead."""
    _, folder = saved_hgb(tmp_path, hgb_model)
    path = folder / "classifier.skops"
    classifier = sio.loads(path.read_bytes(), trusted=sorted(ALLOWED_TYPES))
    nodes = classifier.calibrated_classifiers_[0].estimator._predictors[0][0].nodes
    nodes[field][0] = value  # the root is a split node
    path.write_bytes(sio.dumps(classifier))
    with pytest.raises(ModelError, match=needle):
        ThresholdModel.load(folder)
