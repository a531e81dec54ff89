"""The Dagster code location: `dagster dev -w workspace.yaml` loads ``defs``."""

import dagster as dg

from pipelines.assets import backtest, candles, features, promotion, thresholds
from pipelines.automation import new_candles_sensor, retrain_job, retrain_schedule, universe_partitions_sensor
from pipelines.backup import BackupResource, backup_job, backup_schedule
from pipelines.drift import DriftResource, drift_job, drift_report, drift_schedule, drift_sensor
from pipelines.resources import ExchangeResource, ResearchResource, StoresResource
from pipelines.retrain import RetrainResource

refresh_candles_job = dg.define_asset_job(
    "refresh_candles",
    selection=[candles],
    description="fetch new candles for the chosen symbols (partitions) and check them; nothing is retrained",
)

defs = dg.Definitions(
    assets=[candles, features, thresholds, backtest, promotion, drift_report],
    jobs=[retrain_job, refresh_candles_job, backup_job, drift_job],
    schedules=[retrain_schedule, backup_schedule, drift_schedule],
    sensors=[universe_partitions_sensor, new_candles_sensor, drift_sensor],
    resources={
        "stores": StoresResource(),
        "research": ResearchResource(),
        "exchange": ExchangeResource(),
        "retrain": RetrainResource(),
        "backup": BackupResource(),
        "drift": DriftResource(),
    },
    executor=dg.in_process_executor,
)
