"""Calibration and hit-rate verdicts on simulated outcomes, the overall verdict and the
report's JSON form."""

from __future__ import annotations

import numpy as np

from tradeloop.drift import DriftConfig, DriftReport, calibration_drift, feature_drift, verdict
from tradeloop.drift.report import CalibrationDrift

CONFIG = DriftConfig()


def outcomes(rng: np.random.Generator, n: int, *, truth=lambda p: p) -> tuple[np.ndarray, np.ndarray]:
    p = rng.uniform(0.2, 0.8, n)
    return p, (rng.uniform(size=n) < truth(p)).astype(int)


def test_outcomes_drawn_from_the_models_probabilities_are_not_drifted() -> None:
    rng = np.random.default_rng(3)
    ref_p, ref_y = outcomes(rng, 2000)
    p, y = outcomes(rng, 400)
    cal = calibration_drift(p, y, reference_proba=ref_p, reference_label=ref_y, config=CONFIG)
    assert not cal.calibration_drifted and not cal.hit_rate_drifted
    assert abs(cal.worsening) < 0.02 and cal.closed == 400 and cal.reference_closed == 2000


def test_inverted_outcomes_worsen_the_brier_score_and_all_losses_miss_the_hit_rate() -> None:
    rng = np.random.default_rng(4)
    ref_p, ref_y = outcomes(rng, 2000)
    p, y = outcomes(rng, 400, truth=lambda p: 1 - p)  # same mean, so the hit rate holds
    inverted = calibration_drift(p, y, reference_proba=ref_p, reference_label=ref_y, config=CONFIG)
    assert inverted.calibration_drifted and not inverted.hit_rate_drifted
    # E[Brier] calibrated: E[p(1-p)] = 0.22; inverted (y ~ B(1-p)): E[(1-p)^3 + p^3] = 0.34
    assert 0.09 < inverted.worsening < 0.15
    losing = calibration_drift(p, np.zeros(400, int), reference_proba=ref_p, reference_label=ref_y, config=CONFIG)
    assert losing.hit_rate_drifted and losing.hit_rate.realised == 0.0 and losing.hit_rate.z < -10


def test_too_few_closed_outcomes_are_never_drifted() -> None:
    rng = np.random.default_rng(5)
    ref_p, ref_y = outcomes(rng, 500)
    few = calibration_drift(np.full(29, 0.7), np.zeros(29, int), reference_proba=ref_p, reference_label=ref_y,
                            config=CONFIG)  # fmt: skip
    assert few.closed == 29 and not few.calibration_drifted and not few.hit_rate_drifted


def report(rng: np.random.Generator, *, shift: float) -> DriftReport:
    rows = tuple(
        feature_drift(name, rng.normal(0, 1, 1000), rng.normal(shift if name == "vol_20" else 0, 1, 500), config=CONFIG)
        for name in ("ret_1", "vol_20")
    )
    ref_p, ref_y = outcomes(rng, 1000)
    p, y = outcomes(rng, 100)
    cal = calibration_drift(p, y, reference_proba=ref_p, reference_label=ref_y, config=CONFIG)
    drifted, reasons = verdict(rows, cal, config=CONFIG)
    return DriftReport(strategy="sma_cross", artifact="a" * 64, trained_from=0, trained_until=10, live_from=11,
                       live_until=20, features=rows, calibration=cal, config=CONFIG, drifted=drifted,
                       reasons=reasons)  # fmt: skip


def test_the_verdict_names_the_drifted_feature_and_survives_json() -> None:
    rng = np.random.default_rng(6)
    steady, moved = report(rng, shift=0.0), report(rng, shift=1.5)
    assert not steady.drifted and steady.reasons == ()
    assert moved.drifted and moved.drifted_features == ("vol_20",)
    assert "vol_20 PSI" in moved.reasons[0] and "ret_1" not in moved.reasons[0]
    again = DriftReport.from_dict(moved.as_dict())
    assert again.as_dict() == moved.as_dict() and isinstance(again.calibration, CalibrationDrift)
    assert again.features == moved.features and again.config == CONFIG
