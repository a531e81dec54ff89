"""What a backup needs: the restic repository, its password and the retention policy.

Frozen and validated at construction; :meth:`BackupConfig.from_settings` reads the
``TRADELOOP_BACKUP_*`` settings (``tradeloop.settings``). The password is a ``SecretStr``: it
reaches restic only through the ``RESTIC_PASSWORD`` variable of restic's own environment,
never a command line, a log record or an error message.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from tradeloop.errors import ConfigError, config_error
from tradeloop.settings import Settings

#: the settings' environment variables (TRADELOOP_BACKUP_<FIELD>), to name them in errors
VARIABLES = {
    field: f"TRADELOOP_BACKUP_{field.upper()}"
    for field in ("repository", "password", "keep_last", "keep_daily", "keep_weekly", "keep_monthly", "timeout_s")
}


class BackupConfig(BaseModel):
    """Where backups go and how many are kept (``restic forget --keep-*`` after each backup)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repository: str = Field(
        min_length=1,
        description="the restic repository: a folder, or a restic backend such as sftp:host:/path, "
        "s3:host/bucket, rest:https://host/",
    )
    password: SecretStr = Field(description="the restic repository's password (encrypts every backup)")
    keep_last: int = Field(default=3, ge=0, description="the newest N backups are kept whatever their age")
    keep_daily: int = Field(default=7, ge=0, description="the last backup of each of the last N days is kept")
    keep_weekly: int = Field(default=4, ge=0, description="the last backup of each of the last N weeks is kept")
    keep_monthly: int = Field(default=12, ge=0, description="the last backup of each of the last N months is kept")
    timeout_s: float = Field(default=3600.0, gt=0, description="longest a pg_dump, pg_restore or restic call may run")

    @model_validator(mode="after")
    def _keeps_something(self) -> BackupConfig:
        if not self.password.get_secret_value():
            raise ValueError(f"{VARIABLES['password']} is empty: set the repository's password")
        if not any((self.keep_last, self.keep_daily, self.keep_weekly, self.keep_monthly)):
            raise ValueError(
                "the retention policy keeps nothing (every TRADELOOP_BACKUP_KEEP_* is 0): set at least "
                "TRADELOOP_BACKUP_KEEP_LAST=1"
            )
        return self

    def keep_options(self) -> list[str]:
        """``restic forget``'s policy options, e.g. ``--keep-last 3 --keep-daily 7``."""
        pairs = (
            ("--keep-last", self.keep_last),
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
        )
        return [part for flag, n in pairs if n for part in (flag, str(n))]

    def describe(self) -> str:
        kept = [f"{n} {what}" for what, n in self._keeps() if n]
        return "keeps the " + ", ".join(kept)

    def _keeps(self) -> list[tuple[str, int]]:
        return [
            ("newest", self.keep_last),
            ("daily", self.keep_daily),
            ("weekly", self.keep_weekly),
            ("monthly", self.keep_monthly),
        ]

    @classmethod
    def from_settings(cls, settings: Settings) -> BackupConfig:
        """The config the settings give; no password is a :class:`ConfigError` saying what to set."""
        if settings.backup_password is None:
            raise ConfigError(
                f"{VARIABLES['password']} is not set: backups are encrypted with it; set it (and keep it "
                "somewhere other than the machine backed up: without it no backup can be restored)"
            )
        values = {
            "repository": settings.backup_repository or str(Path(settings.data_dir) / "backups"),
            "password": settings.backup_password,
            "keep_last": settings.backup_keep_last,
            "keep_daily": settings.backup_keep_daily,
            "keep_weekly": settings.backup_keep_weekly,
            "keep_monthly": settings.backup_keep_monthly,
            "timeout_s": settings.backup_timeout_s,
        }
        try:
            return cls(**values)
        except ValidationError as exc:
            raise config_error(exc, what="backup settings", model=cls, names=VARIABLES) from None
