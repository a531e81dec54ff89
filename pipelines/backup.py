"""The nightly backup as a Dagster job and schedule: ``tradeloop backup run`` on the daemon's clock.

The job dumps the operational database and snapshots it with the lake and the model registry
into the restic repository, then applies the retention policy (``tradeloop.backup.run``). Its
metadata shows the snapshot, the tables, rows and files backed up and how many old snapshots
the policy removed; a failure fails the run (visible in the UI, alertable like any run).

The schedule is off until an operator turns it on (Dagster UI: Automation, or
``dagster schedule start nightly_backup``), as it needs ``TRADELOOP_BACKUP_PASSWORD`` in the
daemon's environment: the password is never Dagster config, which the UI shows. Without
Dagster, cron does the same (docs/operations.md, "Backup and restore").

(No ``from __future__ import annotations`` here: Dagster reads the annotations.)
"""

from pathlib import Path

import dagster as dg

from tradeloop.backup import BackupConfig, run_backup
from tradeloop.redaction import mask_url
from tradeloop.settings import get_settings


class BackupResource(dg.ConfigurableResource):
    """What is backed up and where to: the settings' data folder, database and repository unless
    set here (tests point them at temporary ones). The password always comes from the settings."""

    data_dir: str = ""
    database_url: str = ""
    repository: str = ""

    def config(self) -> BackupConfig:
        config = BackupConfig.from_settings(get_settings())
        return config.model_copy(update={"repository": self.repository}) if self.repository else config

    def folder(self) -> Path:
        return Path(self.data_dir) if self.data_dir else get_settings().data_dir

    def url(self) -> str:
        return self.database_url or get_settings().effective_database_url


@dg.op(description="Dump the operational database; snapshot it with lake/ and registry/ (restic); apply the retention")
def backup_op(context: dg.OpExecutionContext, backup: BackupResource) -> str:
    config = backup.config()
    report = run_backup(config=config, data_dir=backup.folder(), database_url=backup.url())
    context.add_output_metadata(
        {
            "snapshot": report.snapshot,
            "repository": mask_url(config.repository),
            "database": report.database,
            "tables": len(report.tables),
            "rows": report.rows,
            "folders": ", ".join(report.folders),
            "files": report.files,
            "bytes_added": report.bytes_added,
            "snapshots_removed": report.removed,
            "retention": config.describe(),
        }
    )
    return report.snapshot


@dg.job(description="Back up the database, the lake and the model registry (tradeloop backup run)")
def backup_job() -> None:
    backup_op()


backup_schedule = dg.ScheduleDefinition(
    name="nightly_backup",
    job=backup_job,
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="tradeloop backup run every night at 02:30 UTC (needs TRADELOOP_BACKUP_PASSWORD in the "
    "daemon's environment; off until turned on).",
)
