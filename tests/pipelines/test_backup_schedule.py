"""The nightly backup in Dagster: the code location schedules it (off until turned on), a tick
asks for one run, and the job run in-process makes a real restic snapshot of the database and
the lake, reported in its metadata."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
from pydantic import SecretStr

from pipelines.backup import BackupResource, backup_job, backup_schedule
from pipelines.definitions import defs
from tradeloop.backup import BackupConfig, list_backups
from tradeloop.data import CandleLake
from tradeloop.data.importer import import_sample
from tradeloop.ops import OpsStore
from tradeloop.settings import get_settings

PASSWORD = "nightly-9c41d2e7"


@pytest.fixture
def backup_password(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The daemon's environment: the repository's password in TRADELOOP_BACKUP_PASSWORD."""
    monkeypatch.setenv("TRADELOOP_BACKUP_PASSWORD", PASSWORD)
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TRADELOOP_BACKUP_PASSWORD")
    get_settings.cache_clear()


def test_the_code_location_schedules_the_nightly_backup_off_until_turned_on() -> None:
    schedule = defs.resolve_schedule_def("nightly_backup")
    assert schedule.cron_schedule == "30 2 * * *" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "backup_job"
    tick = backup_schedule.evaluate_tick(
        dg.build_schedule_context(scheduled_execution_time=datetime(2026, 1, 2, 2, 30, tzinfo=UTC))
    )
    assert len(tick.run_requests or []) == 1


def test_the_backup_job_snapshots_the_database_and_the_lake(tmp_path: Path, backup_password: None) -> None:
    data = tmp_path / "data"
    import_sample(CandleLake(data / "lake"))
    url = f"sqlite:///{(data / 'tradeloop.db').as_posix()}"
    OpsStore.open(url).close()  # a migrated database
    repository = tmp_path / "repo"
    resource = BackupResource(data_dir=str(data), database_url=url, repository=str(repository))

    result = backup_job.execute_in_process(resources={"backup": resource})
    assert result.success
    snapshot = result.output_for_node("backup_op")
    materialized = {
        key: entry.value
        for event in result.all_node_events
        if event.event_type_value == "STEP_OUTPUT"
        for key, entry in event.step_output_data.metadata.items()
    }
    assert materialized["snapshot"] == snapshot and materialized["database"] == "sqlite"
    assert materialized["folders"] == "lake" and materialized["files"] > 5 and materialized["tables"] > 5

    config = BackupConfig(repository=str(repository), password=SecretStr(PASSWORD))
    assert [s.short_id for s in list_backups(config=config)] == [snapshot]
