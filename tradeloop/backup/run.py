"""Back up and restore the operational database, the lake and the model registry.

Rules:

* **One snapshot holds all three.** The database is dumped (``tradeloop.backup.database``) into
  ``<data dir>/backup-database/`` with ``manifest.json`` (the database kind, the dump file, each
  table's row count and hash, the migration revision); restic then backs up ``lake/``,
  ``registry/`` and ``backup-database/`` from the data folder, under those names, encrypted,
  deduplicated against earlier snapshots. The staging folder is removed afterwards.
* **Retention** runs after every backup: ``restic forget`` with the policy of
  :class:`~tradeloop.backup.config.BackupConfig` over tradeloop's snapshots, then ``prune``
  when any was removed.
* **One backup at a time** per data folder (a lock file beside the staging folder); a second
  is refused, not queued.
* **Restore only into empty targets**: the database must hold no table and ``lake/`` and
  ``registry/`` must be missing or empty; anything else is refused before a byte is written.
  The snapshot is restored (and verified by restic) into a temporary folder inside the data
  folder, the database is loaded and its fingerprint must equal the manifest's, and only then
  are ``lake/`` and ``registry/`` moved into place. A restored database is at the migration
  revision it was dumped at; the next start of any process migrates it as usual.
* Consistency: the dump is one instant of the database; the folders are read file by file
  after it (their writes are atomic renames, so every file is whole). The database is the
  system of record; the lake can be re-ingested.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from tradeloop.backup import database
from tradeloop.backup.config import BackupConfig
from tradeloop.backup.database import TableFingerprint
from tradeloop.backup.restic import Restic, Snapshot
from tradeloop.errors import BackupError, ConfigError
from tradeloop.ops.database import VERSION_TABLE
from tradeloop.redaction import mask_url

log = logging.getLogger(__name__)
STAGING = "backup-database"
MANIFEST = "manifest.json"
FOLDERS = ("lake", "registry")
FORMAT = 1


@dataclass(frozen=True, kw_only=True, slots=True)
class BackupReport:
    snapshot: str
    database: str
    tables: dict[str, TableFingerprint]
    folders: tuple[str, ...]
    files: int
    bytes_added: int
    seconds: float
    removed: int
    repository_created: bool

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


@dataclass(frozen=True, kw_only=True, slots=True)
class RestoreReport:
    snapshot: str
    database: str
    tables: dict[str, TableFingerprint]
    folders: tuple[str, ...] = field(default_factory=tuple)
    revision: str | None = None


def run_backup(*, config: BackupConfig, data_dir: Path, database_url: str) -> BackupReport:
    """Rules "One snapshot", "Retention" and "One backup at a time"."""
    started = time.monotonic()
    data_dir = Path(data_dir).resolve()
    kind = database.backend(database_url)
    restic = Restic(config)
    with _exclusive(data_dir / ".backup.lock"):
        staging = data_dir / STAGING
        shutil.rmtree(staging, ignore_errors=True)  # a crashed run's leftovers
        staging.mkdir(parents=True)
        try:
            created = restic.ensure_repository()
            dump_file, tables = database.dump(database_url, staging, timeout_s=config.timeout_s)
            folders = tuple(name for name in FOLDERS if (data_dir / name).is_dir())
            manifest = {
                "format": FORMAT,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "database": kind,
                "dump": dump_file,
                "revision": _revision(tables, staging / dump_file if kind == "sqlite" else None, database_url),
                "tables": {name: {"rows": t.rows, "sha256": t.sha256} for name, t in tables.items()},
                "folders": list(folders),
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            summary = restic.backup([*folders, STAGING], cwd=data_dir, tags=[f"database={kind}"])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        removed = restic.forget()
    report = BackupReport(
        snapshot=str(summary["snapshot_id"]),
        database=kind,
        tables=tables,
        folders=folders,
        files=int(summary.get("total_files_processed", 0)),
        bytes_added=int(summary.get("data_added", 0)),
        seconds=time.monotonic() - started,
        removed=removed,
        repository_created=created,
    )
    log.info(
        "backup %s: %s (%d tables, %d rows), %s to %s; %d old snapshots removed",
        report.snapshot, kind, len(tables), report.rows, ", ".join(folders) or "no folder",
        restic.shown_repository, removed,
    )  # fmt: skip
    return report


def list_backups(*, config: BackupConfig) -> list[Snapshot]:
    """tradeloop's snapshots in the repository, oldest first (none while there is no repository)."""
    restic = Restic(config)
    return restic.snapshots() if restic.exists() else []


def restore_backup(*, config: BackupConfig, snapshot: str, data_dir: Path, database_url: str) -> RestoreReport:
    """Rule "Restore only into empty targets": ``snapshot`` (an id or ``latest``) into ``data_dir``
    and the database at ``database_url``."""
    data_dir = Path(data_dir).resolve()
    kind = database.backend(database_url)
    _refuse_full_targets(data_dir, database_url)
    restic = Restic(config)
    snapshot = _resolve(restic, snapshot)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".restore-", dir=data_dir) as tmp:
        restored = Path(tmp)
        restic.restore(snapshot, target=restored)
        try:
            manifest = json.loads((restored / STAGING / MANIFEST).read_text())
        except FileNotFoundError:
            raise BackupError(
                f"snapshot {snapshot} holds no {STAGING}/{MANIFEST}: it was not made by tradeloop"
            ) from None
        if manifest.get("format") != FORMAT:
            raise BackupError(
                f"snapshot {snapshot}: manifest format {manifest.get('format')!r}; this tradeloop reads {FORMAT}"
            )
        if manifest["database"] != kind:
            raise ConfigError(
                f"snapshot {snapshot} holds a {manifest['database']} database and "
                f"DATABASE_URL={mask_url(database_url)!r} is {kind}: restore it into an empty "
                f"{manifest['database']} database"
            )
        got = database.restore(restored / STAGING / manifest["dump"], database_url, timeout_s=config.timeout_s)
        expected = {name: TableFingerprint(**t) for name, t in manifest["tables"].items()}
        if got != expected:
            differ = sorted(n for n in expected.keys() | got.keys() if expected.get(n) != got.get(n))
            raise BackupError(
                f"the restored database differs from snapshot {snapshot}'s manifest in {', '.join(differ)}: "
                "it is not a faithful copy; drop it and restore again (restic check verifies the repository)"
            )
        folders = tuple(name for name in manifest["folders"] if (restored / name).is_dir())
        for name in folders:
            target = data_dir / name
            if target.is_dir():
                target.rmdir()  # empty: checked above
            os.replace(restored / name, target)
    log.info("restored snapshot %s into %s and %s", snapshot, data_dir, mask_url(database_url))
    return RestoreReport(
        snapshot=snapshot[:8], database=kind, tables=got, folders=folders, revision=manifest.get("revision")
    )


# ---------------------------------------------------------------------- helpers
def _refuse_full_targets(data_dir: Path, database_url: str) -> None:
    tables = database.existing_tables(database_url)
    if tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise ConfigError(
            f"DATABASE_URL={mask_url(database_url)!r} already holds {len(tables)} tables ({shown}): a backup "
            "is restored only into an empty database; create a new one (CREATE DATABASE ...) or point "
            "DATABASE_URL / --database-url at one"
        )
    for name in FOLDERS:
        target = data_dir / name
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise ConfigError(
                f"{target} is not empty: a backup is restored only into an empty folder; move it aside or "
                "restore into another data folder (--data-dir)"
            )


def _resolve(restic: Restic, snapshot: str) -> str:
    """The id of ``snapshot`` (``latest``: the newest of tradeloop's; else an id or its prefix)."""
    snapshots = restic.snapshots()
    if not snapshots:
        raise BackupError(f"the repository {restic.shown_repository} holds no tradeloop backup yet")
    if snapshot == "latest":
        return snapshots[-1].id
    found = [s.id for s in snapshots if s.id.startswith(snapshot.lower())]
    if len(found) != 1:
        shown = ", ".join(s.short_id for s in snapshots[-5:])
        what = "matches several" if found else "is not one of tradeloop's snapshots"
        raise ConfigError(f"snapshot {snapshot!r} {what} in {restic.shown_repository}; the newest: {shown}")
    return found[0]


def _revision(tables: dict, sqlite_copy: Path | None, url: str) -> str | None:
    """The migration revision the dump is at (None before the first migration)."""
    if VERSION_TABLE not in tables:
        return None
    engine = sa.create_engine(f"sqlite:///{sqlite_copy.as_posix()}" if sqlite_copy else url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(sa.column("version_num")).select_from(sa.table(VERSION_TABLE))).scalar()
    finally:
        engine.dispose()


@contextmanager
def _exclusive(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup of {lock.parent} is running (it holds {lock}); wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
