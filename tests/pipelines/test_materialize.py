"""The whole research graph materialized in-process on the bundled sample, the champion
gate on a second run, the new-candles sensor, and the blocking candle check."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.assets import backtest, candles, features, promotion, thresholds
from pipelines.automation import new_candles_sensor
from pipelines.checks import candle_quality
from pipelines.definitions import defs
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.run import materialize_all
from tradeloop.data import CandleLake, SeriesKey

ASSETS = [candles, features, thresholds, backtest, promotion]


def resources(root: Path) -> dict:
    return {"stores": StoresResource(data_dir=str(root)), "research": ResearchResource(n_trials=8),
            "exchange": ExchangeResource(mode="sample")}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster")
    instance = dg.DagsterInstance.ephemeral()
    return root, instance, materialize_all(resources(root), instance)


def test_definitions_load_with_schedule_sensor_and_jobs() -> None:
    assert {"retrain", "refresh_candles"} <= {j.name for j in defs.jobs}
    assert [s.cron_schedule for s in defs.schedules] == ["30 0 * * *"]
    assert defs.resolve_asset_graph().get_all_asset_keys() >= {dg.AssetKey(n) for n in
                                                                 ("candles", "features", "promotion")}


def test_whole_graph_materializes_and_promotes_with_lineage(first_run) -> None:
    root, _, result = first_run
    assert result.success
    for name in ("features", "thresholds", "backtest"):
        meta = result.asset_materializations_for_node(name)[0].metadata
        notebook = Path(meta["notebook"].value)
        assert notebook.exists() and notebook.parent.name == result.run_id  # kept per run
    promoted = result.asset_materializations_for_node("promotion")[0].metadata
    assert promoted["promoted"].value is True
    entry = StoresResource(data_dir=str(root)).registry.champion("sma_cross")
    assert entry.artifact == promoted["artifact"].value
    assert entry.lineage.run_id == result.run_id and entry.lineage.data_snapshot != "unknown"
    assert entry.lineage.parameters["strategy"] == "sma_cross"
    assert {"deflated_sharpe", "pbo", "oos_sharpe_per_bar"} <= set(entry.lineage.metrics)


def test_blocking_checks_passed_in_the_run(first_run) -> None:
    _, _, result = first_run
    evaluations = {e.check_name: e.passed for e in
                   (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")}
    assert evaluations == {"feature_sanity": True, "backtest_sanity": True}


def test_second_run_that_does_not_beat_the_champion_keeps_it(first_run) -> None:
    root, instance, result = first_run
    before = StoresResource(data_dir=str(root)).registry.champion("sma_cross")
    again = dg.materialize(ASSETS, selection=[promotion], resources=resources(root), instance=instance)
    meta = again.asset_materializations_for_node("promotion")[0].metadata
    gate = {c["name"]: c for c in meta["gate"].data}
    assert gate["beats_champion"]["passed"] is False  # same candidate: equal, not better
    assert meta["promoted"].value is False
    assert StoresResource(data_dir=str(root)).registry.champion("sma_cross") == before


def test_sensor_requests_a_retrain_only_when_candles_advance(first_run) -> None:
    root, instance, _ = first_run
    assert sorted(instance.get_dynamic_partitions("symbols")) == ["BTC-USD", "ETH-USD"]  # added by materialize_all
    res = resources(root)
    stores = res["stores"]
    ctx = dg.build_sensor_context(instance=instance, resources=res)
    first = new_candles_sensor(ctx)
    assert len(first.run_requests) == 1 and first.dynamic_partitions_requests == []  # partitions known already
    ctx2 = dg.build_sensor_context(instance=instance, resources=res, cursor=first.cursor)
    assert new_candles_sensor(ctx2).skip_reason is not None
    key = SeriesKey("coinbase", "BTC-USD", "4h")
    last = stores.lake.read(key).tail(1)
    stores.lake.write(key, last.with_columns(pl.col("ts") + 4 * 3_600_000), source="test")
    ctx3 = dg.build_sensor_context(instance=instance, resources=res, cursor=first.cursor)
    assert len(new_candles_sensor(ctx3).run_requests) == 1


def test_candle_quality_fails_on_a_gappy_series(tmp_path) -> None:
    lake = CandleLake(tmp_path / "lake")
    key = SeriesKey("coinbase", "BTC-USD", "1h")
    h = 3_600_000
    t0 = 1_704_067_200_000  # 2024-01-01: the lake refuses candles before 2009
    ts = list(range(t0, t0 + 50 * h, h)) + list(range(t0 + 80 * h, t0 + 100 * h, h))  # 30 missing candles
    lake.write(key, pl.DataFrame({"ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}),
               source="test")
    quality, freshness = candle_quality(lake, key, now_ms=t0 + 100 * h)
    assert quality.passed is False and quality.metadata["missing_candles"].value == 30
    assert freshness.passed is True
