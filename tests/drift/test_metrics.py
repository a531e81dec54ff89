"""The tradeloop_drift_* gauges read the latest drift report at each scrape, through the
real prometheus-client exposition; a report that cannot be read leaves its series out."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.drift.test_report import report
from tradeloop.drift import report_path, write_report
from tradeloop.observability import exposition
from tradeloop.observability.drift import unwatch_drift, watch_drift


def scraped() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = exposition()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        if family.name.startswith("tradeloop_drift")
        for s in family.samples
    }


def test_the_gauges_follow_the_report_file(tmp_path: Path) -> None:
    research = tmp_path / "research"
    moved = report(np.random.default_rng(6), shift=1.5)
    path = write_report(moved, report_path(research, "sma_cross"))
    os.utime(path, (1_700_000_000, 1_700_000_000))
    watch_drift(research)
    try:
        series = scraped()
        assert series[("tradeloop_drift_detected", (("kind", "any"), ("strategy", "sma_cross")))] == 1.0
        assert series[("tradeloop_drift_detected", (("kind", "features"), ("strategy", "sma_cross")))] == 1.0
        assert series[("tradeloop_drift_detected", (("kind", "calibration"), ("strategy", "sma_cross")))] == 0.0
        vol = next(f for f in moved.features if f.feature == "vol_20")
        assert series[("tradeloop_drift_psi", (("feature", "vol_20"), ("strategy", "sma_cross")))] == vol.psi
        assert series[("tradeloop_drift_brier_worsening", (("strategy", "sma_cross"),))] == moved.calibration.worsening
        assert series[("tradeloop_drift_report_timestamp_seconds", (("strategy", "sma_cross"),))] == 1_700_000_000
        write_report(report(np.random.default_rng(6), shift=0.0), path)  # the next report is steady
        assert scraped()[("tradeloop_drift_detected", (("kind", "any"), ("strategy", "sma_cross")))] == 0.0
        path.write_text("{not json")  # a damaged report: its series vanish, the scrape still answers
        assert not any(name == "tradeloop_drift_detected" for name, _ in scraped())
    finally:
        unwatch_drift(research)
    assert not scraped()
