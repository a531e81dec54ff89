"""The champion's drift, read from the latest drift report of each strategy at each scrape.

The research pipeline writes ``<research>/drift/<strategy>.json`` (``tradeloop.drift``); the
process that calls :func:`watch_drift` (the API) reports, per strategy:

* ``tradeloop_drift_detected{strategy,kind}``: 1 when the report is drifted beyond its bars,
  else 0; ``kind`` is ``any`` (the verdict), ``features``, ``calibration`` or ``hit_rate``.
* ``tradeloop_drift_psi{strategy,feature}``: each judged feature's population stability index.
* ``tradeloop_drift_brier_worsening{strategy}``: live Brier score minus the training window's
  (left out while there are no closed outcomes).
* ``tradeloop_drift_report_timestamp_seconds{strategy}``: when the report was written (its
  file's modification time), so a rule can tell an old verdict from a fresh one.

A report that cannot be read is left out of that scrape (``tradeloop.observability.sampled``).
"""

from __future__ import annotations

from pathlib import Path

from tradeloop.drift import DriftReport, read_report
from tradeloop.drift.windows import DRIFT_DIR
from tradeloop.observability.sampled import Rows, Sampled

DRIFT_DETECTED = Sampled(
    "tradeloop_drift_detected", "1 when the champion's latest drift report is beyond its bars", ("strategy", "kind")
)
DRIFT_PSI = Sampled("tradeloop_drift_psi", "Population stability index of a model feature", ("strategy", "feature"))
DRIFT_BRIER = Sampled("tradeloop_drift_brier_worsening", "Live Brier score minus the training window's", ("strategy",))
DRIFT_REPORTED = Sampled(
    "tradeloop_drift_report_timestamp_seconds", "When the latest drift report was written", ("strategy",)
)
DRIFT_FAMILIES = (DRIFT_DETECTED, DRIFT_PSI, DRIFT_BRIER, DRIFT_REPORTED)


def _reports(folder: Path) -> list[tuple[DriftReport, float]]:
    return [(read_report(path), path.stat().st_mtime) for path in sorted(folder.glob("*.json"))]


def detected_rows(folder: Path) -> Rows:
    rows = []
    for report, _ in _reports(folder):
        cal = report.calibration
        kinds = {
            "any": report.drifted,
            "features": len(report.drifted_features) >= report.config.min_drifted_features,
            "calibration": cal.calibration_drifted,
            "hit_rate": cal.hit_rate_drifted,
        }
        rows += [((report.strategy, kind), float(flag)) for kind, flag in kinds.items()]
    return rows


def psi_rows(folder: Path) -> Rows:
    return [((r.strategy, f.feature), f.psi) for r, _ in _reports(folder) for f in r.features if f.psi is not None]


def brier_rows(folder: Path) -> Rows:
    return [
        ((r.strategy,), r.calibration.worsening) for r, _ in _reports(folder) if r.calibration.worsening is not None
    ]


def watch_drift(research_dir: Path) -> None:
    """Report the drift reports under ``research_dir`` at each scrape (module rules)."""
    folder = Path(research_dir) / DRIFT_DIR
    key = str(folder)
    DRIFT_DETECTED.track(key, lambda: detected_rows(folder))
    DRIFT_PSI.track(key, lambda: psi_rows(folder))
    DRIFT_BRIER.track(key, lambda: brier_rows(folder))
    DRIFT_REPORTED.track(key, lambda: [((r.strategy,), at) for r, at in _reports(folder)])


def unwatch_drift(research_dir: Path) -> None:
    key = str(Path(research_dir) / DRIFT_DIR)
    for family in DRIFT_FAMILIES:
        family.forget(key)
