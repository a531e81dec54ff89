"""Backups of the operational database, the lake and the model registry, in one encrypted,
deduplicated restic repository with a retention policy; restores that prove themselves.

``tradeloop backup run | list | restore`` (``tradeloop.cli.backup_cmds``) and the Dagster
schedule ``nightly_backup`` (``pipelines.backup``) call these. The rules are in
``tradeloop.backup.run`` (what a snapshot holds, restoring), ``tradeloop.backup.database``
(dumps and fingerprints) and ``tradeloop.backup.restic`` (how restic is called).
"""

from tradeloop.backup.config import BackupConfig
from tradeloop.backup.database import Fingerprint, TableFingerprint, fingerprint
from tradeloop.backup.restic import Snapshot
from tradeloop.backup.run import BackupReport, RestoreReport, list_backups, restore_backup, run_backup

__all__ = [
    "BackupConfig",
    "BackupReport",
    "Fingerprint",
    "RestoreReport",
    "Snapshot",
    "TableFingerprint",
    "fingerprint",
    "list_backups",
    "restore_backup",
    "run_backup",
]
