"""The restic command line, as tradeloop calls it.

Rules:

* restic is Debian's ``restic`` package, found on ``PATH``; missing, it is a :class:`ConfigError`
  saying how to install it.
* The repository and its password reach restic only through its environment
  (``RESTIC_REPOSITORY``, ``RESTIC_PASSWORD``); any other ``RESTIC_*`` variable of this process
  is dropped, so a stray ``RESTIC_PASSWORD_FILE`` cannot pick another key. Commands are
  logged at DEBUG without them; restic's error text is redacted before it is raised.
* Every call has a time limit (``BackupConfig.timeout_s``); one that runs out is a
  :class:`BackupError`, as is any failed call (with restic's last lines).
* Snapshots made by tradeloop carry the tag ``tradeloop``; listing, restoring "latest" and
  the retention policy see only those, grouped by their tags (so the retention of one
  database kind never removes the other's).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess  # restic is run with argument lists, never a shell
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tradeloop.backup.config import BackupConfig
from tradeloop.errors import BackupError, ConfigError
from tradeloop.redaction import mask_url, redact, register_secret, url_password

log = logging.getLogger(__name__)
TAG = "tradeloop"
_NO_REPOSITORY = ("Is there a repository at the following location?", "repository does not exist")


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """One backup in the repository."""

    id: str
    short_id: str
    time: datetime
    hostname: str
    tags: tuple[str, ...]

    @property
    def database(self) -> str:
        """The database kind the backup holds (its ``database=`` tag), ``?`` when untagged."""
        return next((t.split("=", 1)[1] for t in self.tags if t.startswith("database=")), "?")


class Restic:
    """restic against one repository (constructing it runs nothing)."""

    def __init__(self, config: BackupConfig) -> None:
        self.config = config
        register_secret(config.password.get_secret_value(), url_password(config.repository))

    @property
    def shown_repository(self) -> str:
        return mask_url(self.config.repository)

    def _binary(self) -> str:
        found = shutil.which("restic")
        if found is None:
            raise ConfigError(
                "restic is not installed: install Debian's restic package (apt-get install restic); "
                "tradeloop keeps the lake and the model registry in a restic repository"
            )
        return found

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RESTIC_")}
        env["RESTIC_REPOSITORY"] = self.config.repository
        env["RESTIC_PASSWORD"] = self.config.password.get_secret_value()
        return env

    def run(self, *args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``restic ARGS`` in ``cwd``; a failure (when ``check``) or a timeout is a BackupError."""
        log.debug("restic %s (repository %s)", " ".join(args), self.shown_repository)
        try:
            done = subprocess.run(
                [self._binary(), *args],
                cwd=cwd,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=self.config.timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise BackupError(
                f"restic {args[0]} took longer than {self.config.timeout_s:g} s on {self.shown_repository}; "
                "raise TRADELOOP_BACKUP_TIMEOUT_S or check the repository's storage"
            ) from None
        if check and done.returncode != 0:
            raise BackupError(f"restic {args[0]} on {self.shown_repository} failed: {self.error_text(done)}")
        return done

    @staticmethod
    def error_text(done: subprocess.CompletedProcess[str]) -> str:
        lines = [line for line in (done.stderr or done.stdout or "").splitlines() if line.strip()]
        return redact(" / ".join(lines[-4:]) or f"exit status {done.returncode}")

    # ------------------------------------------------------------------ operations
    def exists(self) -> bool:
        """Whether the repository is there (one that cannot be opened is a BackupError)."""
        probe = self.run("cat", "config", check=False)
        if probe.returncode == 0:
            return True
        if any(marker in probe.stderr for marker in _NO_REPOSITORY):
            return False
        raise BackupError(f"the restic repository {self.shown_repository} cannot be opened: {self.error_text(probe)}")

    def ensure_repository(self) -> bool:
        """Initialise the repository when there is none; True when it was made now."""
        if self.exists():
            return False
        self.run("init")
        log.info("initialised the restic repository %s", self.shown_repository)
        return True

    def backup(self, paths: list[str], *, cwd: Path, tags: list[str]) -> dict:
        """Back ``paths`` (relative to ``cwd``, stored under those names) up; restic's summary."""
        tagged = [part for tag in [TAG, *tags] for part in ("--tag", tag)]
        done = self.run("backup", "--json", *tagged, "--", *paths, cwd=cwd)
        for line in reversed(done.stdout.splitlines()):
            if line.startswith("{") and '"summary"' in line:
                return json.loads(line)
        raise BackupError(f"restic backup on {self.shown_repository} printed no summary: {self.error_text(done)}")

    def snapshots(self) -> list[Snapshot]:
        """tradeloop's snapshots, oldest first."""
        done = self.run("snapshots", "--json", "--tag", TAG)
        return [
            Snapshot(
                id=s["id"],
                short_id=s.get("short_id", s["id"][:8]),
                time=datetime.fromisoformat(_seconds(s["time"])),
                hostname=s.get("hostname", ""),
                tags=tuple(s.get("tags") or ()),
            )
            for s in json.loads(done.stdout or "[]")
        ]

    def forget(self) -> int:
        """Apply the retention policy to tradeloop's snapshots and prune what none still uses;
        the number of snapshots removed."""
        done = self.run("forget", "--json", "--tag", TAG, "--group-by", "tags", *self.config.keep_options())
        first = next((line for line in done.stdout.splitlines() if line.startswith("[")), "[]")
        removed = sum(len(group.get("remove") or ()) for group in json.loads(first))
        if removed:
            self.run("prune", "--quiet")
        return removed

    def restore(self, snapshot: str, *, target: Path) -> None:
        """Restore ``snapshot`` (an id, or ``latest``) into ``target`` and verify every file."""
        self.run("restore", snapshot, "--tag", TAG, "--target", str(target), "--verify")


def _seconds(stamp: str) -> str:
    """restic's nanosecond time as ``fromisoformat`` reads it (at most microseconds)."""
    head, dot, rest = stamp.partition(".")
    if not dot:
        return stamp
    digits = "".join(c for c in rest if c.isdigit())
    zone = rest[len(digits) :]
    return f"{head}.{digits[:6]}{'+00:00' if zone == 'Z' else zone}"
