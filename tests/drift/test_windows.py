"""The drift report of a champion on the lake: the training window is what the model saw,
the live window what came after; a volatility regime change drifts, the same regime does
not; the closed outcomes' probabilities are the decision code's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from tests.drift import synthetic
from tradeloop.data import CandleLake
from tradeloop.drift import DriftConfig, champion_drift, drift_windows, read_report, report_path, write_report
from tradeloop.errors import ModelError
from tradeloop.registry import ModelRegistry
from tradeloop.thresholds.decide import decide


def report_of(root: Path, *, live_vol: float):
    frame = synthetic.candles(seed=1, live_vol=live_vol)
    artifact = synthetic.champion(root, frame)
    registry = ModelRegistry(root / "registry")
    lake = CandleLake(root / "lake", quarantine_root=root / "quarantine")
    return frame, artifact, registry, champion_drift(lake, registry, strategy=synthetic.STRATEGY, config=DriftConfig())


def test_a_volatility_regime_change_drifts_and_the_same_regime_does_not(tmp_path: Path) -> None:
    _, _, _, steady = report_of(tmp_path / "steady", live_vol=0.01)
    _, artifact, _, moved = report_of(tmp_path / "moved", live_vol=0.04)
    assert not steady.drifted and steady.reasons == ()
    assert all(f.psi is not None and f.psi < 0.25 for f in steady.features)
    assert moved.drifted and "vol_20" in moved.drifted_features and moved.artifact == artifact
    assert moved.trained_until == synthetic.trained_until()
    assert moved.live_from == synthetic.trained_until() + synthetic.BAR
    assert moved.live_until == synthetic.START + synthetic.BAR * (synthetic.TRAIN_BARS + synthetic.LIVE_BARS - 1)
    # every live bar of both symbols whose features are warm: all of them, long after the warm-up
    assert {f.live_rows for f in moved.features} == {2 * synthetic.LIVE_BARS}
    path = write_report(moved, report_path(tmp_path / "research", synthetic.STRATEGY))
    assert read_report(path).as_dict() == moved.as_dict()


def test_windows_split_at_the_training_end_and_outcomes_carry_the_decision_codes_probability(tmp_path: Path) -> None:
    frame, _, registry, _ = report_of(tmp_path, live_vol=0.01)
    _, model = registry.load(synthetic.STRATEGY)
    assert model.estimator.model_ is not None  # a fitted classifier, not the constant fallback
    windows = drift_windows(frame, model)
    until = synthetic.trained_until()
    assert windows.trained_from == model.info["trained_from"] and windows.trained_until == until
    assert windows.live.height == 2 * synthetic.LIVE_BARS
    live = windows.live_outcomes
    assert live.height > 0 and live["ts"].min() > until and windows.reference_outcomes["ts"].max() <= until
    decided = decide(frame.sort("symbol", "ts"), model, now_ms="bar").select("symbol", "ts", "proba")
    joined = live.join(decided, on=["symbol", "ts"], suffix="_decided")
    assert joined.height == live.height
    np.testing.assert_allclose(joined["proba"].to_numpy(), joined["proba_decided"].to_numpy(), rtol=1e-12)
    assert live["proba"].n_unique() > 1  # the classifier's, not a constant


def test_no_champion_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no champion"):
        champion_drift(CandleLake(tmp_path / "lake"), ModelRegistry(tmp_path / "registry"), strategy="sma_cross",
                       config=DriftConfig())  # fmt: skip
    with pytest.raises(ModelError, match="no candles"):
        frame = synthetic.candles(seed=2)
        synthetic.champion(tmp_path / "w", frame)
        _, model = ModelRegistry(tmp_path / "w" / "registry").load(synthetic.STRATEGY)
        drift_windows(pl.DataFrame(schema=frame.schema), model)
