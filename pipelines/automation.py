"""Daily retraining schedule, a sensor that retrains when new candles land in the lake, and
one that keeps the candles asset's partitions equal to the research universe (running from
the start: a fresh `dagster dev` registers the symbols as it starts)."""

import json
from datetime import UTC, datetime

import dagster as dg

from pipelines.partitions import missing_keys, symbol_partitions, universe_symbols
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import RetrainResource
from tradeloop.data.schema import timeframe_ms

retrain_job = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets("features", "thresholds", "backtest", "promotion"),
    description="features -> thresholds (an optuna study scored under the retrain policy) -> backtest -> "
    "promotion: the champion changes only when every gate check passes",
)


@dg.schedule(
    job=retrain_job,
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    name="policy_retrain",
    description="Retrains on the retrain policy's days (midnight UTC of every retrain_every_days-th "
    "day since 1970, when the walk-forward refits); checked daily at 00:05 UTC, other days "
    "skipped with the date of the next one.",
)
def retrain_schedule(context: dg.ScheduleEvaluationContext, retrain: RetrainResource):
    """The retrain policy's retrain times (``RetrainPolicy.is_retrain_time``: midnight UTC of every
    ``retrain_every_days``-th day since 1970, the instants the walk-forward refits at): checked
    each day a few minutes after midnight; other days are skipped, saying when the next one is."""
    when = context.scheduled_execution_time
    midnight = int(when.replace(hour=0, minute=0, second=0, microsecond=0).timestamp() * 1000)
    policy = retrain.policy()
    if not policy.is_retrain_time(midnight):
        following = policy.last_retrain_time(midnight) + policy.cadence_ms
        return dg.SkipReason(
            f"not a retrain day ({policy.describe()}); next: "
            f"{datetime.fromtimestamp(following / 1000, tz=UTC).date().isoformat()}"
        )
    return dg.RunRequest(run_key=f"retrain-{midnight}", tags={"trigger": "retrain_policy"})


@dg.sensor(
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Registers the research universe's symbols as partitions of candles (running from the "
    "start, so Materialize all lists them); it starts no run.",
)
def universe_partitions_sensor(
    context: dg.SensorEvaluationContext, stores: StoresResource, research: ResearchResource, exchange: ExchangeResource
):
    """Adds the research universe's symbols as partitions of ``candles`` (``pipelines.partitions``),
    so that "Materialize all" preselects every symbol. It requests no run; keys are only added."""
    new = missing_keys(context.instance, universe_symbols(research, stores.lake, exchange))
    if not new:
        return dg.SensorResult(skip_reason=dg.SkipReason("every symbol of the research universe is a partition"))
    return dg.SensorResult(dynamic_partitions_requests=[symbol_partitions.build_add_request(new)])


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=300,
    description="Retrains when new candles reach a retrain time the champion has not seen (never more "
    "often than the retrain policy); adds new universe symbols as partitions.",
)
def new_candles_sensor(
    context: dg.SensorEvaluationContext,
    stores: StoresResource,
    research: ResearchResource,
    exchange: ExchangeResource,
    retrain: RetrainResource,
):
    """Adds the research universe's symbols as ``candles`` partitions (``pipelines.partitions``)
    and requests a retrain when new candles make one due under the retrain policy: the latest
    retrain time the candles have reached holds data the champion has not seen (no champion
    yet, or candles that came after the scheduled retrain ran). It never retrains more often
    than the policy, which is what the walk-forward simulated. The cursor keeps the last
    candle seen per series label."""
    lake = stores.lake
    symbols = universe_symbols(research, lake, exchange)
    new = missing_keys(context.instance, symbols)
    added = [symbol_partitions.build_add_request(new)] if new else []
    latest = {research.key(s).label: lake.last_ts(research.key(s)) for s in symbols}
    seen = json.loads(context.cursor) if context.cursor else {}
    advanced = {label: ts for label, ts in latest.items() if ts is not None and ts > seen.get(label, -1)}
    if not advanced:
        return dg.SensorResult(
            skip_reason=dg.SkipReason("no new candles in the research universe"), dynamic_partitions_requests=added
        )
    cursor = json.dumps({**seen, **advanced})
    due = _retrain_due(stores, research, retrain, newest=max(advanced.values()))
    if due is None:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                "new candles, but the champion has seen every retrain "
                "time they reach (policy: " + retrain.policy().describe() + ")"
            ),
            dynamic_partitions_requests=added,
            cursor=cursor,
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(run_key=f"retrain-due-{due}", tags={"trigger": "new_candles"})],
        dynamic_partitions_requests=added,
        cursor=cursor,
    )


def _retrain_due(
    stores: StoresResource, research: ResearchResource, retrain: RetrainResource, *, newest: int
) -> int | None:
    """The retrain time the champion still lacks, given the newest candle (ms), or None."""
    policy = retrain.policy()
    bar = timeframe_ms(research.timeframe)
    due = policy.last_retrain_time(newest + bar)  # the newest retrain time whose data has closed
    entry = stores.registry.champion(research.strategy)
    if (
        entry is not None
        and stores.registry.model_of(entry.artifact, strategy=research.strategy).trained_until >= due - bar
    ):
        return None
    return due
