"""Daily retraining schedule and a sensor that retrains when new candles land in the lake."""

import json

import dagster as dg
from pipelines.resources import RESEARCH_EXCHANGE, RESEARCH_SYMBOLS, RESEARCH_TIMEFRAME, StoresResource
from tradeloop.data import SeriesKey

retrain_job = dg.define_asset_job(
    "retrain", selection=dg.AssetSelection.assets("features", "thresholds", "backtest", "promotion"),
    description="features -> thresholds (optuna) -> backtest -> promotion gate")

retrain_schedule = dg.ScheduleDefinition(job=retrain_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
                                         name="daily_retrain")


@dg.sensor(job=retrain_job, minimum_interval_seconds=300)
def new_candles_sensor(context: dg.SensorEvaluationContext, stores: StoresResource):
    """Requests a retrain when any research series has a newer last candle than last time."""
    lake = stores.lake
    latest = {s: lake.last_ts(SeriesKey(RESEARCH_EXCHANGE, s, RESEARCH_TIMEFRAME)) for s in RESEARCH_SYMBOLS}
    seen = json.loads(context.cursor) if context.cursor else {}
    advanced = {s: ts for s, ts in latest.items() if ts is not None and ts > seen.get(s, -1)}
    if not advanced:
        return dg.SkipReason("no new candles in the research universe")
    context.update_cursor(json.dumps({**seen, **advanced}))
    return dg.RunRequest(run_key=f"candles-{json.dumps(advanced, sort_keys=True)}",
                         tags={"trigger": "new_candles"})
