"""Daily retraining schedule and a sensor that retrains when new candles land in the lake."""

import json
from datetime import UTC, datetime

import dagster as dg
from pipelines.partitions import missing_keys, symbol_partitions, universe_symbols
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import RetrainResource

retrain_job = dg.define_asset_job(
    "retrain", selection=dg.AssetSelection.assets("features", "thresholds", "backtest", "promotion"),
    description="features -> thresholds (optuna) -> backtest -> promotion gate")

@dg.schedule(job=retrain_job, cron_schedule="5 0 * * *", execution_timezone="UTC", name="policy_retrain")
def retrain_schedule(context: dg.ScheduleEvaluationContext, retrain: RetrainResource):
    """The retrain policy's retrain times (``RetrainPolicy.is_retrain_time``: midnight UTC of every
    ``retrain_every_days``-th day since 1970, the instants the walk-forward refits at): checked
    each day a few minutes after midnight; other days are skipped, saying when the next one is."""
    when = context.scheduled_execution_time
    midnight = int(when.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    policy = retrain.policy()
    if not policy.is_retrain_time(midnight):
        following = policy.last_retrain_time(midnight) + policy.cadence_ms
        return dg.SkipReason(f"not a retrain day ({policy.describe()}); next: "
                             f"{datetime.fromtimestamp(following / 1000, tz=UTC).date().isoformat()}")
    return dg.RunRequest(run_key=f"retrain-{midnight}", tags={"trigger": "retrain_policy"})


@dg.sensor(job=retrain_job, minimum_interval_seconds=300)
def new_candles_sensor(context: dg.SensorEvaluationContext, stores: StoresResource, research: ResearchResource,
                       exchange: ExchangeResource):
    """Adds the research universe's symbols as ``candles`` partitions (``pipelines.partitions``)
    and requests a retrain when any of its series has a newer last candle than last time
    (the cursor keeps the last candle seen per series label)."""
    lake = stores.lake
    symbols = universe_symbols(research, lake, exchange)
    new = missing_keys(context.instance, symbols)
    added = [symbol_partitions.build_add_request(new)] if new else []
    latest = {research.key(s).label: lake.last_ts(research.key(s)) for s in symbols}
    seen = json.loads(context.cursor) if context.cursor else {}
    advanced = {label: ts for label, ts in latest.items() if ts is not None and ts > seen.get(label, -1)}
    if not advanced:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new candles in the research universe"),
                               dynamic_partitions_requests=added)
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"candles-{json.dumps(advanced, sort_keys=True)}",
                                    tags={"trigger": "new_candles"})],
        dynamic_partitions_requests=added, cursor=json.dumps({**seen, **advanced}))
