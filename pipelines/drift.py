"""Drift monitoring: the drift report asset (notebooks/drift.py), its daily schedule, and the
sensor that retrains when a report is drifted.

* ``drift_report`` runs the notebook, which compares the champion's training window with every
  bar after it (``tradeloop.drift``) and writes ``<research>/drift/<strategy>.json``. That
  file is what the API's ``tradeloop_drift_*`` gauges read at each scrape
  (``tradeloop.observability.drift``), and the ``ModelDrift`` alert fires on them
  (deploy/prometheus/alerts.yml). Without a champion nothing is compared; the
  materialization says so.
* ``drift_sensor`` watches the asset's materializations: a drifted one writes a
  ``drift_detected`` audit row (and a warning in the run's log) and requests one ``retrain``
  run, keyed on the report's run (a report never retrains twice), from the materialization's
  own metadata (a newer report file cannot change what an older event asks). An undrifted one
  is skipped with its reason. The report runs daily, so drift a retrain cannot cure (the gate
  refuses every candidate) asks for at most one retrain a day, each audited.

(No ``from __future__ import annotations`` here: Dagster reads the annotations.)
"""

from pathlib import Path

import dagster as dg

from pipelines import metadata
from pipelines.automation import retrain_job
from pipelines.resources import ResearchResource, StoresResource
from pipelines.retrain import record
from tradeloop.drift import DriftConfig, read_report, report_path
from tradeloop.logs import bound_ids
from tradeloop.research.notebooks import notebook_path, run_notebook

DRIFT_DETECTED = "drift_detected"
REPO = Path(__file__).resolve().parents[1]


class DriftResource(dg.ConfigurableResource):
    """The bars of ``tradeloop.drift.DriftConfig`` (a bad value is a ConfigError naming it)."""

    psi_bar: float = 0.25
    ks_p_bar: float = 0.01
    bins: int = 10
    min_drifted_features: int = 1
    min_feature_rows: int = 200
    brier_worsening: float = 0.05
    hit_rate_p_bar: float = 0.01
    min_closed: int = 30

    def config(self) -> DriftConfig:
        return DriftConfig.parse(self.model_dump())


@dg.asset(group_name="monitoring", kinds={"jupyter"})
def drift_report(
    context: dg.AssetExecutionContext, stores: StoresResource, research: ResearchResource, drift: DriftResource
):
    """The champion's drift against its training window (notebooks/drift.py): PSI and a KS
    test per feature, Brier score and reliability on closed outcomes, the hit rate against the
    model's expectation. ``drifted`` in the metadata is what ``drift_sensor`` acts on."""
    strategy = research.strategy
    if stores.registry.champion(strategy) is None:
        context.log.info(f"no champion of {strategy}: nothing to compare")
        return dg.MaterializeResult(metadata={"drifted": False, "reasons": f"no champion of {strategy}"})
    out = report_path(stores.research_dir, strategy)
    params = {
        "lake_dir": str(stores.lake.root),
        "registry_dir": str(stores.root / "registry"),
        "strategy": strategy,
        "config": drift.config().model_dump(mode="json"),
        "output_path": str(out),
    }
    output = stores.run_dir(context.run.run_id) / "drift.ipynb"
    with bound_ids(run_id=context.run.run_id):
        run = run_notebook(notebook_path("drift"), output, params, cwd=REPO)
    report = read_report(out)
    rows = [
        (f.feature, f.psi, f.ks_pvalue, f.reference_rows, f.live_rows, "yes" if f.drifted else "")
        for f in report.features
    ]
    cal, hits = report.calibration, report.calibration.hit_rate
    return dg.MaterializeResult(
        metadata={
            "drifted": report.drifted,
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report.reasons) or "none"),
            "features": metadata.table(rows, ["feature", "PSI", "KS p", "training bars", "live bars", "drifted"]),
            "calibration": metadata.key_values(
                {
                    "closed live outcomes": cal.closed,
                    "outcomes of": "the sessions' closed trades" if cal.source == "sessions" else "simulated entries",
                    "Brier live": cal.brier,
                    "Brier training": cal.reference_brier,
                    "hit rate": f"{hits.realised:.3f} vs {hits.expected:.3f} expected (p {hits.pvalue:.3g})",
                }
            ),
            "trained_until": metadata.timestamp(report.trained_until),
            "live_until": metadata.timestamp(report.live_until),
            "artifact": report.artifact,
            "verdict": dg.MetadataValue.json(  # what drift_sensor reads
                {"reasons": list(report.reasons), "drifted_features": list(report.drifted_features)}
            ),
            **metadata.notebook_links(output),
            "report_path": dg.MetadataValue.path(str(out)),
            "notebook_seconds": metadata.rounded(run.seconds, 1),
        }
    )


drift_job = dg.define_asset_job(
    "drift",
    selection=[drift_report],
    description="the champion's drift report (features, calibration, hit rate against its training window); "
    "drift_sensor retrains when it is drifted",
)


@dg.schedule(
    job=drift_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    name="daily_drift_report",
    description="The champion's drift report every day at 00:30 UTC, after the 00:05 retrain check.",
)
def drift_schedule(context: dg.ScheduleEvaluationContext):
    """The drift report every day at 00:30 UTC (after the 00:05 retrain check)."""
    return dg.RunRequest(run_key=f"drift-{context.scheduled_execution_time.date().isoformat()}")


@dg.asset_sensor(
    asset_key=dg.AssetKey("drift_report"),
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains when a drift report is drifted (an audit row says why); once per report.",
)
def drift_sensor(
    context: dg.SensorEvaluationContext,
    asset_event: dg.EventLogEntry,
    stores: StoresResource,
    research: ResearchResource,
):
    """A drifted ``drift_report`` materialization: audit ``drift_detected`` with the report's
    reasons and request a ``retrain`` run keyed on the report's run. Otherwise skip."""
    materialization = asset_event.asset_materialization
    meta = materialization.metadata if materialization is not None else {}
    drifted = meta.get("drifted")
    if drifted is None or not drifted.value:
        reasons = meta.get("reasons")
        return dg.SkipReason(f"the latest drift report is not drifted ({reasons.value if reasons else 'no reasons'})")
    verdict = meta["verdict"].value
    why = "; ".join(verdict["reasons"])
    context.log.warning(f"drift beyond the bars for {research.strategy}: {why}; requesting a retrain")
    record(
        DRIFT_DETECTED,
        root=stores.root,
        strategy=research.strategy,
        run_id=asset_event.run_id,
        artifact=meta["artifact"].value,
        drifted_features=list(verdict["drifted_features"]),
        reason=why[:500],
    )
    return dg.RunRequest(
        run_key=f"drift-{asset_event.run_id}", tags={"trigger": "drift", "drift_report_run": asset_event.run_id}
    )
