"""``tradeloop backup run | list | restore``: the operational database, the lake and the model
registry in one encrypted restic snapshot, kept under the retention policy, and restored only
into an empty database and empty folders, proven by the tables' counts and hashes
(``tradeloop.backup``). The repository's password comes from ``TRADELOOP_BACKUP_PASSWORD``,
never an option."""

from __future__ import annotations

import logging
from datetime import UTC
from pathlib import Path
from typing import Annotated

import typer

from tradeloop.backup import BackupConfig, list_backups, restore_backup, run_backup
from tradeloop.cli.common import console, handle_errors, table
from tradeloop.redaction import mask_url
from tradeloop.settings import Settings, get_settings

app = typer.Typer(
    help="Backups of the database, the lake and the model registry (restic; TRADELOOP_BACKUP_*).",
    no_args_is_help=True,
)


def _settings() -> tuple[Settings, BackupConfig]:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    return settings, BackupConfig.from_settings(settings)


@app.command("run")
@handle_errors
def run() -> None:
    """Back up now: dump the database, then snapshot it with lake/ and registry/; apply the retention."""
    settings, config = _settings()
    report = run_backup(config=config, data_dir=settings.data_dir, database_url=settings.effective_database_url)
    if report.repository_created:
        console.print(f"initialised the restic repository {mask_url(config.repository)}", highlight=False)
    console.print(
        f"snapshot {report.snapshot}: {report.database} database ({len(report.tables)} tables, {report.rows:,} rows)"
        f" and {', '.join(report.folders) or 'no folder'} ({report.files:,} files, {report.bytes_added:,} new bytes)"
        f" in {report.seconds:.1f} s",
        highlight=False,
    )
    console.print(f"retention ({config.describe()}): {report.removed} older snapshot(s) removed", highlight=False)


@app.command("list")
@handle_errors
def list_() -> None:
    """The backups in the repository, oldest first."""
    _, config = _settings()
    snapshots = list_backups(config=config)
    tbl = table(f"Backups in {mask_url(config.repository)}", ["snapshot", "time (UTC)", "database", "host"],
                left=("snapshot", "time (UTC)", "database", "host"))  # fmt: skip
    for snap in snapshots:
        tbl.add_row(snap.short_id, f"{snap.time.astimezone(UTC):%Y-%m-%d %H:%M:%S}", snap.database, snap.hostname)
    console.print(tbl)
    if not snapshots:
        console.print("no backup yet: tradeloop backup run makes one", highlight=False)


@app.command("restore")
@handle_errors
def restore(
    snapshot: Annotated[str, typer.Argument(help="a snapshot id from `tradeloop backup list`, or latest")] = "latest",
    data_dir: Annotated[
        Path | None, typer.Option(help="the data folder whose lake/ and registry/ are restored (empty)")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="the empty database restored into; DATABASE_URL (or SQLite in the data folder) by default"),
    ] = None,
) -> None:
    """Restore a backup into an empty database and an empty data folder, and prove it (row counts, hashes)."""
    settings, config = _settings()
    folder = data_dir or settings.data_dir
    url = database_url or settings.database_url or f"sqlite:///{(folder / 'tradeloop.db').as_posix()}"
    report = restore_backup(config=config, snapshot=snapshot, data_dir=folder, database_url=url)
    console.print(
        f"restored {report.snapshot}: {report.database} database {mask_url(url)} ({len(report.tables)} tables, "
        f"{sum(t.rows for t in report.tables.values()):,} rows, every table's count and hash as backed up; "
        f"migration {report.revision or 'none'}) and {', '.join(report.folders) or 'no folder'} into {folder}",
        highlight=False,
    )
