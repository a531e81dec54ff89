"""The drift report asset (its notebook run for real by papermill) and the drift sensor
against a real Dagster instance: a champion whose live data changed regime gets a retrain
run request and a drift_detected audit row; one whose data did not is skipped."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.definitions import defs
from pipelines.drift import DRIFT_DETECTED, DriftResource, drift_report, drift_sensor
from pipelines.resources import ResearchResource, StoresResource
from pipelines.retrain import ops_url
from tests.drift import synthetic
from tradeloop.drift import read_report, report_path
from tradeloop.errors import ConfigError
from tradeloop.ops import OpsStore


def resources(root: Path) -> dict:
    return {
        "stores": StoresResource(data_dir=str(root)),
        "research": ResearchResource(exchange=synthetic.EXCHANGE, symbols=list(synthetic.SYMBOLS)),
        "drift": DriftResource(),
    }


def report_then_sensor(root: Path, *, live_vol: float):
    """The drift report materialized in a fresh instance, then one tick of the sensor."""
    artifact = synthetic.champion(root, synthetic.candles(seed=1, live_vol=live_vol))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([drift_report], resources=resources(root), instance=instance)
    assert result.success
    meta = result.asset_materializations_for_node("drift_report")[0].metadata
    context = dg.build_sensor_context(instance=instance, resources=resources(root), definitions=defs)
    return artifact, result, meta, drift_sensor.evaluate_tick(context)


def test_drifted_live_data_requests_a_retrain_and_audits_why(tmp_path: Path) -> None:
    artifact, result, meta, tick = report_then_sensor(tmp_path, live_vol=0.04)
    assert meta["drifted"].value is True and "vol_20" in meta["features"].value
    assert Path(meta["notebook"].value).exists()  # the executed notebook is kept with the run
    report = read_report(report_path(tmp_path / "research", synthetic.STRATEGY))
    assert report.drifted and report.artifact == artifact
    [request] = tick.run_requests
    assert drift_sensor.job_name == "retrain" and request.run_key == f"drift-{result.run_id}"
    assert request.tags["trigger"] == "drift"
    store = OpsStore.open(ops_url(tmp_path))
    try:
        [row] = store.audit_log(events=(DRIFT_DETECTED,))
    finally:
        store.close()
    assert row.detail["artifact"] == artifact and "vol_20" in row.detail["drifted_features"]
    assert "PSI" in row.detail["reason"] and row.actor == "research-pipeline"


def test_undrifted_live_data_is_skipped(tmp_path: Path) -> None:
    _, _, meta, tick = report_then_sensor(tmp_path, live_vol=0.01)
    assert meta["drifted"].value is False
    assert not tick.run_requests and "not drifted" in tick.skip_message
    store = OpsStore.open(ops_url(tmp_path))
    try:
        assert store.audit_log(events=(DRIFT_DETECTED,)) == []
    finally:
        store.close()


def test_without_a_champion_nothing_is_compared_and_nothing_retrains(tmp_path: Path) -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([drift_report], resources=resources(tmp_path), instance=instance)
    meta = result.asset_materializations_for_node("drift_report")[0].metadata
    assert meta["drifted"].value is False and meta["reasons"].value == "no champion of sma_cross"
    context = dg.build_sensor_context(instance=instance, resources=resources(tmp_path), definitions=defs)
    tick = drift_sensor.evaluate_tick(context)
    assert not tick.run_requests and "no champion" in tick.skip_message
    assert not report_path(tmp_path / "research", "sma_cross").exists()


def test_a_bad_bar_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"psi_bar=-1\.0"):
        DriftResource(psi_bar=-1.0).config()
