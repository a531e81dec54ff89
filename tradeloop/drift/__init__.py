"""Drift of the champion against its training window: features (PSI and a KS test per
feature), calibration (reliability and Brier score on closed outcomes) and the hit rate
against the model's expectation, judged under ``DriftConfig``'s bars."""

from tradeloop.drift.config import DriftConfig
from tradeloop.drift.report import (
    CalibrationDrift,
    DriftReport,
    FeatureDrift,
    calibration_drift,
    feature_drift,
    verdict,
)
from tradeloop.drift.stats import (
    HitRate,
    ReliabilityBin,
    brier,
    hit_rate_test,
    ks_test,
    psi,
    quantile_edges,
    reliability,
)
from tradeloop.drift.windows import (
    DriftWindows,
    champion_drift,
    drift_report,
    drift_windows,
    read_report,
    report_path,
    write_report,
)

__all__ = [
    "CalibrationDrift",
    "DriftConfig",
    "DriftReport",
    "DriftWindows",
    "FeatureDrift",
    "HitRate",
    "ReliabilityBin",
    "brier",
    "calibration_drift",
    "champion_drift",
    "drift_report",
    "drift_windows",
    "feature_drift",
    "hit_rate_test",
    "ks_test",
    "psi",
    "quantile_edges",
    "read_report",
    "reliability",
    "report_path",
    "verdict",
    "write_report",
]
