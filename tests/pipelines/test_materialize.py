"""The whole research graph materialized in-process on the bundled sample, the champion
gate on a second run, the new-candles sensor, and the blocking candle check."""

from __future__ import annotations

import base64
import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from pipelines.assets import backtest, candles, features, promotion, thresholds
from pipelines.automation import new_candles_sensor, retrain_schedule, universe_partitions_sensor
from pipelines.checks import candle_freshness, candle_quality
from pipelines.definitions import defs
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import RetrainResource, ops_url
from pipelines.run import materialize_all
from tradeloop.data import CandleLake, SeriesKey
from tradeloop.ops import OpsStore
from tradeloop.research.steps import METRICS_JSON
from tradeloop.settings import get_settings

ASSETS = [candles, features, thresholds, backtest, promotion]


# bars this 8-trial run on the sample can pass, so that promotion itself is exercised; the
# default bars (DSR 0.95, drawdown -35%, 5 recent trades) refuse it: see the refusal test.
# A long refit cadence keeps the run short (the policy's semantics: test_policy_replay.py)
PASSABLE = RetrainResource(
    retrain_every_days=180,
    max_model_age_days=270,
    min_deflated_sharpe=0.0,
    max_pbo=1.0,
    max_drawdown=-1.0,
    min_recent_trades=0,
)


def resources(root: Path, retrain: RetrainResource = PASSABLE, **research: object) -> dict:
    # one worker: a seeded study is reproducible (two workers sample in the order they finish,
    # and now and then the best trial's model took no trade in the history: backtest_sanity failed)
    return {
        "stores": StoresResource(data_dir=str(root)),
        "research": ResearchResource(n_trials=8, workers=1, **research),
        "exchange": ExchangeResource(mode="sample"),
        "retrain": retrain,
    }


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagster")
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:  # JupyterLab served from the data folder: the runs are in it
        patch.setattr("pipelines.metadata.LAB_ROOT", root)
        return root, instance, materialize_all(resources(root), instance)


def test_definitions_load_with_schedule_sensor_and_jobs() -> None:
    assert {"retrain", "refresh_candles", "backup_job"} <= {j.name for j in defs.jobs}
    assert sorted(s.name for s in defs.schedules) == ["daily_drift_report", "nightly_backup", "policy_retrain"]
    assert defs.resolve_asset_graph().get_all_asset_keys() >= {
        dg.AssetKey(n) for n in ("candles", "features", "promotion")
    }


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
    assert {
        "deflated_sharpe",
        "pbo",
        "oos_sharpe_per_bar",
        "oos_sharpe_annualised",
        "max_drawdown",
        "recent_trades",
        "beats_champion",
    } <= set(entry.lineage.metrics)
    assert entry.lineage.metrics["max_drawdown"] <= 0.0  # drawdowns are negative fractions
    assert "| deflated_sharpe |" in promoted["gate"].value  # the checks as a markdown table
    model = StoresResource(data_dir=str(root)).registry.model_of(entry.artifact, strategy="sma_cross")
    assert model.info["retrain_policy"] == PASSABLE.policy().model_dump(mode="json")
    assert model.max_age_ms == PASSABLE.policy().max_age_ms and model.info["data_hash"]


def test_blocking_checks_passed_in_the_run(first_run) -> None:
    _, _, result = first_run
    evaluations = {
        e.check_name: e.passed
        for e in (ev.event_specific_data for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION")
    }
    assert evaluations == {"feature_sanity": True, "backtest_sanity": True}


def test_a_retrain_on_the_same_data_ties_and_keeps_the_engine_on_a_fresh_model(first_run) -> None:
    """The champion's parameters are re-evaluated on the same folds; a candidate equal to it
    (a refit) passes the tolerance instead of being refused for not being strictly better."""
    root, instance, result = first_run
    before = StoresResource(data_dir=str(root)).registry.champion("sma_cross")
    again = dg.materialize(
        ASSETS, selection=[thresholds, backtest, promotion], resources=resources(root), instance=instance
    )
    tuned = again.asset_materializations_for_node("thresholds")[0].metadata
    meta = again.asset_materializations_for_node("promotion")[0].metadata
    gate = {c["name"]: c for c in meta["gate_checks"].data}
    reevaluated = tuned["champion_reevaluated_sharpe"].value
    assert gate["beats_champion"]["value"] == pytest.approx(reevaluated, abs=1e-6)  # same data, same folds: a tie
    assert gate["beats_champion"]["bar"] == pytest.approx(reevaluated - PASSABLE.champion_tolerance, abs=1e-6)
    assert gate["beats_champion"]["passed"] is True and meta["promoted"].value is True
    after = StoresResource(data_dir=str(root)).registry.champion("sma_cross")
    assert after.artifact == meta["artifact"].value and after.lineage.run_id == again.run_id  # the refit is in force
    assert after.lineage.parameters == before.lineage.parameters


def test_the_default_gate_refuses_and_says_why_in_the_audit_log(first_run) -> None:
    root, instance, _ = first_run
    before = StoresResource(data_dir=str(root)).registry.champion("sma_cross")
    strict = RetrainResource(**{**PASSABLE.model_dump(exclude_unset=True), "min_recent_trades": 1_000_000})
    again = dg.materialize(ASSETS, selection=[promotion], resources=resources(root, strict), instance=instance)
    meta = again.asset_materializations_for_node("promotion")[0].metadata
    assert meta["promoted"].value is False
    assert StoresResource(data_dir=str(root)).registry.champion("sma_cross") == before
    store = OpsStore.open(ops_url(root))
    refused = store.audit_log(events=("retrain_refused",))
    assert refused and "recent_trades" in refused[-1].detail["reason"]
    assert refused[-1].detail["run_id"] == again.run_id
    store.close()


def test_a_failed_retrain_is_audited_and_fails_the_run(first_run) -> None:
    root, instance, _ = first_run
    failed = dg.materialize(
        ASSETS,
        selection=[thresholds],
        instance=instance,
        raise_on_error=False,
        resources=resources(root, max_drawdown=-1e-9),
    )  # no trial can be feasible
    assert not failed.success
    store = OpsStore.open(ops_url(root))
    rows = store.audit_log(events=("retrain_failed",))
    assert rows and rows[-1].detail["run_id"] == failed.run_id and rows[-1].detail["strategy"] == "sma_cross"
    store.close()


def test_the_schedule_runs_on_the_policys_retrain_days_only() -> None:
    retrain = RetrainResource(retrain_every_days=7, max_model_age_days=14)
    policy = retrain.policy()
    runs = []
    for day in range(1, 15):  # two weeks of daily evaluations, a few minutes after midnight
        when = datetime(2026, 3, day, 0, 5, tzinfo=UTC)
        ctx = dg.build_schedule_context(scheduled_execution_time=when, resources={"retrain": retrain})
        if isinstance(retrain_schedule(ctx), dg.RunRequest):
            runs.append(when)
    assert len(runs) == 2 and runs[1] - runs[0] == timedelta(days=7)
    # the same instants the walk-forward refits at
    midnight = int(runs[0].replace(minute=0).timestamp() * 1000)
    assert policy.retrain_times(midnight - 1, midnight + 14 * 86_400_000).tolist()[:2] == [
        midnight,
        midnight + 7 * 86_400_000,
    ]


def test_sensor_requests_a_retrain_only_when_new_candles_make_one_due(first_run) -> None:
    """New candles alone do not retrain (that would refit more often than the policy the
    walk-forward simulated): only candles reaching a retrain time the champion has not seen."""
    root, instance, _ = first_run
    assert sorted(instance.get_dynamic_partitions("symbols")) == ["BTC-USD", "ETH-USD"]  # added by materialize_all
    res = resources(root)
    stores, policy = res["stores"], res["retrain"].policy()
    first = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res))
    assert first.run_requests == [] and first.dynamic_partitions_requests == []  # the champion saw them all
    assert "champion has seen" in first.skip_reason.skip_message
    bar = 4 * 3_600_000
    key = SeriesKey("coinbase", "BTC-USD", "4h")
    last = stores.lake.read(key).tail(1)
    after = int(last["ts"][0]) + bar
    due = policy.last_retrain_time(after) + policy.cadence_ms  # the next retrain time
    more = pl.concat([last.with_columns(ts=pl.lit(t, dtype=pl.Int64)) for t in range(after, due - bar, bar)])
    stores.lake.write(key, more, source="test")  # candles up to, not through, the next retrain time
    second = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res, cursor=first.cursor))
    assert second.run_requests == [] and second.cursor != first.cursor
    stores.lake.write(key, last.with_columns(ts=pl.lit(due - bar, dtype=pl.Int64)), source="test")  # closes at due
    third = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res, cursor=second.cursor))
    assert [r.run_key for r in third.run_requests] == [f"retrain-due-{due}"]
    repeat = new_candles_sensor(dg.build_sensor_context(instance=instance, resources=res, cursor=third.cursor))
    assert repeat.run_requests == []  # no newer candle: nothing more to ask


def test_candle_quality_fails_on_a_gappy_series(tmp_path) -> None:
    lake = CandleLake(tmp_path / "lake")
    key = SeriesKey("coinbase", "BTC-USD", "1h")
    h = 3_600_000
    t0 = 1_704_067_200_000  # 2024-01-01: the lake refuses candles before 2009
    ts = list(range(t0, t0 + 50 * h, h)) + list(range(t0 + 80 * h, t0 + 100 * h, h))  # 30 missing candles
    lake.write(
        key, pl.DataFrame({"ts": ts, "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0}), source="test"
    )
    quality, freshness = candle_quality(lake, key, now_ms=t0 + 100 * h)
    assert quality.passed is False and quality.metadata["missing_candles"].value == 30
    assert freshness.passed is True


def test_every_asset_check_job_schedule_and_sensor_says_what_it_does() -> None:
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        assert len(graph.get(key).description or "") > 40, key
    assert {k.name for k in graph.asset_check_keys} == {
        "candle_quality",
        "candle_freshness",
        "feature_sanity",
        "backtest_sanity",
    }
    for key in graph.asset_check_keys:
        assert len(graph.get(key).description or "") > 40, key
    for item in [*defs.jobs, *defs.schedules, *defs.sensors]:
        assert len(item.description or "") > 40, item.name


def test_freshness_says_what_it_expects_in_dates() -> None:
    key = SeriesKey("coinbase", "BTC-USD", "4h")
    last = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
    now = last + 20 * 3_600_000  # 20 hours later: the candle closed 16 hours, four bars, ago
    stale = candle_freshness(key, last, now_ms=now)
    assert stale.passed is False and stale.severity == dg.AssetCheckSeverity.WARN
    # fresh means opened no more than 3 bars before the bar open now (16:00): on or after 04:00
    assert "newest 4h candle opened 2025-01-01 00:00 UTC" in stale.description
    assert "on or after 2025-01-01 04:00 UTC" in stale.description and "4 bars behind" in stale.description
    assert stale.metadata["newest_candle"] == dg.MetadataValue.timestamp(last / 1000)
    assert candle_freshness(key, last + 4 * 3_600_000, now_ms=now).passed is True  # exactly the oldest fresh one


def test_materializations_read_as_tables_an_image_and_links(first_run) -> None:
    root, _, result = first_run
    lab = get_settings().lab_url
    for name in ("features", "thresholds", "backtest"):
        meta = result.asset_materializations_for_node(name)[0].metadata
        notebook = Path(meta["notebook"].value)
        assert meta["notebook_in_lab"] == dg.MetadataValue.url(
            f"{lab}/lab/tree/runs/{result.run_id}/{name}.ipynb"
        )  # JupyterLab served from the data folder
        assert notebook == root / "runs" / result.run_id / f"{name}.ipynb" and notebook.exists()
    backtest_meta = result.asset_materializations_for_node("backtest")[0].metadata
    metrics = json.loads((root / "research" / "backtest" / METRICS_JSON).read_text())
    table = backtest_meta["metrics"]
    assert isinstance(table, dg.MarkdownMetadataValue)
    row = next(line for line in table.value.splitlines() if line.startswith("| max drawdown"))
    assert f"{100 * metrics['oos']['max_drawdown']:.2f}%" in row  # a percentage, not a fraction
    assert f"{100 * metrics['full_history']['max_drawdown']:.2f}%" in row
    image = backtest_meta["equity"]
    assert isinstance(image, dg.MarkdownMetadataValue)
    png = base64.b64decode(re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)\)", image.value).group(1))
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    tuned = result.asset_materializations_for_node("thresholds")[0].metadata
    assert isinstance(tuned["summary"], dg.MarkdownMetadataValue) and "| strategy" in tuned["summary"].value
    assert isinstance(tuned["best_params"], dg.MarkdownMetadataValue)
    gate = result.asset_materializations_for_node("promotion")[0].metadata["gate"]
    assert isinstance(gate, dg.MarkdownMetadataValue) and "| max_drawdown |" in gate.value


def test_no_metadata_shows_a_long_float(first_run) -> None:
    """Floats are rounded to what they mean, and markdown tables hold no 16-digit numbers."""
    _, _, result = first_run
    entries = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value in ("ASSET_MATERIALIZATION", "ASSET_CHECK_EVALUATION")
    ]
    metadata = [getattr(e, "materialization", e).metadata for e in entries]
    assert len(metadata) >= 6
    for meta in metadata:
        for name, value in meta.items():
            if isinstance(value, dg.FloatMetadataValue) and math.isfinite(value.value) and name != "min_coverage":
                assert value.value == round(value.value, 6), (name, value.value)
            if isinstance(value, dg.MarkdownMetadataValue) and "base64" not in value.value:
                assert not re.search(r"\d\.\d{7,}", value.value), (name, value.value)


def test_the_universe_sensor_registers_the_partitions_of_a_fresh_instance(tmp_path) -> None:
    """It runs from the start, so "Materialize all" on a fresh `dagster dev` lists every symbol."""
    assert universe_partitions_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    instance = dg.DagsterInstance.ephemeral()
    res = resources(tmp_path)  # nothing stored yet: the explicit universe
    first = universe_partitions_sensor(dg.build_sensor_context(instance=instance, resources=res))
    assert [r.partition_keys for r in first.dynamic_partitions_requests] == [["BTC-USD", "ETH-USD"]]
    assert first.run_requests == []  # it only registers
    instance.add_dynamic_partitions("symbols", ["BTC-USD", "ETH-USD"])  # what the daemon does with the request
    again = universe_partitions_sensor(dg.build_sensor_context(instance=instance, resources=res))
    assert again.dynamic_partitions_requests == [] and "every symbol" in again.skip_reason.skip_message
