"""The classifier file is loaded with an exact allow-list: no code in it ever runs."""

from __future__ import annotations

import numpy as np
import pytest
import skops.io as sio
from sklearn.ensemble import RandomForestClassifier

from tests.thresholds.hostile import PAYLOADS, Payload, run_naively, with_payload_inside
from tradeloop.errors import ModelError
from tradeloop.strategies import SmaCross
from tradeloop.thresholds import META_FEATURES, AdaptiveThreshold, BarrierConfig, ThresholdModel
from tradeloop.thresholds.safe_skops import ALLOWED_TYPES


def fitted(**params) -> AdaptiveThreshold:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, len(META_FEATURES)))
    y = (X[:, 0] + rng.normal(size=300) > 0).astype(int)
    return AdaptiveThreshold(**params).fit(X, y, returns=np.where(y == 1, 0.02, -0.01))


def saved(tmp_path, **params):
    model = ThresholdModel(
        strategy=SmaCross(), barriers=BarrierConfig(), estimator=fitted(**params), trained_until=1_700_000_000_000
    )
    return model, model.save(tmp_path / "model")


@pytest.mark.parametrize("kind", ["logistic", "hgb"])
def test_the_allow_list_is_exactly_what_the_project_trains(tmp_path, kind: str) -> None:
    reported: set[str] = set()
    for calibration in ("sigmoid", "isotonic"):  # every classifier option AdaptiveThreshold supports
        est = fitted(calibration=calibration, model=kind)
        reported |= set(sio.get_untrusted_types(data=sio.dumps(est.model_)))
        model, folder = saved(tmp_path / calibration, calibration=calibration, model=kind)
        loaded = ThresholdModel.load(folder)
        assert loaded.estimator.model == kind
        X = np.random.default_rng(9).normal(size=(20, len(META_FEATURES)))
        np.testing.assert_array_equal(loaded.estimator.predict_proba(X), model.estimator.predict_proba(X))
    trees = {"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"}
    common = {
        "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration",
        "sklearn.model_selection._split.TimeSeriesSplit",
    }
    assert reported == (common | trees if kind == "hgb" else common)
    assert ALLOWED_TYPES == common | trees


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.name)
def test_a_hostile_classifier_file_is_refused_before_anything_is_built(tmp_path, payload: Payload) -> None:
    proof = tmp_path / "proof"
    run_naively(payload.build(proof), proof, payload)
    assert proof.exists(), "the payload must be live, or this test proves nothing"

    marker = tmp_path / "pwned"
    _, folder = saved(tmp_path)
    (folder / "classifier.skops").write_bytes(payload.build(marker))
    with pytest.raises(ModelError, match="outside the allow-list") as caught:
        ThresholdModel.load(folder)
    for name in payload.refused:
        assert repr(name) in str(caught.value)
    assert not marker.exists()


def test_a_payload_deep_inside_a_real_classifier_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    _, folder = saved(tmp_path)
    path = folder / "classifier.skops"
    path.write_bytes(with_payload_inside(path.read_bytes(), marker))
    with pytest.raises(ModelError, match=r"outside the allow-list: \['builtins.exec'\]"):
        ThresholdModel.load(folder)
    assert not marker.exists()


def test_only_prefixes_were_never_enough(tmp_path) -> None:
    """A type under an allowed package but not on the list (a tree from a random forest) is refused
    at save time, so no model is written that could not be loaded."""
    est = fitted(classifier=RandomForestClassifier(n_estimators=3, random_state=0))
    model = ThresholdModel(
        strategy=SmaCross(), barriers=BarrierConfig(), estimator=est, trained_until=1_700_000_000_000
    )
    with pytest.raises(ModelError, match=r"outside the allow-list \['sklearn.tree._tree.Tree'\]"):
        model.save(tmp_path / "forest")
    assert not (tmp_path / "forest" / "model.json").exists()


def test_a_file_that_is_not_our_classifier_is_refused(tmp_path) -> None:
    _, folder = saved(tmp_path)
    path = folder / "classifier.skops"
    path.write_bytes(sio.dumps([1, 2, 3]))
    with pytest.raises(ModelError, match="holds a list, not the CalibratedClassifierCV"):
        ThresholdModel.load(folder)
    path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ModelError, match="not a readable skops file"):
        ThresholdModel.load(folder)
    path.write_bytes(sio.dumps(_three_feature_classifier()))
    with pytest.raises(ModelError, match="classifier for 3 features, but model.json lists 7"):
        ThresholdModel.load(folder)
    path.unlink()
    with pytest.raises(ModelError, match="classifier.skops is missing"):
        ThresholdModel.load(folder)


def _three_feature_classifier():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    return AdaptiveThreshold().fit(X, y, returns=np.where(y == 1, 0.02, -0.01)).model_
