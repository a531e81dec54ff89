"""The operational database into one file and back, with a fingerprint of every table.

Rules:

* **PostgreSQL**: ``pg_dump --format=custom`` of the database, taken in a snapshot exported by
  a repeatable-read, read-only transaction that also counts and hashes every table, so the
  dump and its fingerprint are the same instant while the engine keeps writing. Restored with
  ``pg_restore --single-transaction --exit-on-error --no-owner`` (the restoring user owns the
  objects; the grants to the API role are kept, so that role is made first when the server
  lacks it, as migration 0008 does). The password goes to pg_dump and pg_restore in
  ``PGPASSWORD``, never on their command line.
* **SQLite**: copied with the online backup API (``sqlite3.Connection.backup``), which gives a
  consistent copy while the engine writes; the fingerprint is taken from the copy. Restored
  the same way into the target file.
* **Fingerprint**: per table (every table of the database's default schema, the migration
  version table included), the row count and a SHA-256 over every row in primary-key order
  (rows of a table without one, sorted). A restore is proven by equal fingerprints.
* **Only into an empty database**: a target holding any table is refused before anything is
  written (:func:`existing_tables`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import subprocess  # pg_dump and pg_restore are run with argument lists, never a shell
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, make_url

from tradeloop.errors import BackupError, ConfigError
from tradeloop.ops.row_security import API_ROLE
from tradeloop.redaction import mask_url, redact

log = logging.getLogger(__name__)
DUMP_NAMES = {"postgresql": "database.pgdump", "sqlite": "database.sqlite"}


@dataclass(frozen=True, kw_only=True, slots=True)
class TableFingerprint:
    rows: int
    sha256: str


Fingerprint = dict[str, TableFingerprint]


def backend(url: str) -> str:
    """``postgresql`` or ``sqlite``; anything else is a ConfigError."""
    try:
        name = make_url(url).get_backend_name()
    except (sa.exc.ArgumentError, ValueError):
        raise ConfigError(f"DATABASE_URL={mask_url(url)!r} is not a SQLAlchemy URL") from None
    if name not in DUMP_NAMES:
        raise ConfigError(f"DATABASE_URL={mask_url(url)!r}: backups cover PostgreSQL and SQLite, not {name}")
    return name


def fingerprint(conn: Connection) -> Fingerprint:
    """Rule "Fingerprint", read through ``conn`` (inside its transaction, if one is open)."""
    inspector = sa.inspect(conn)
    prints: Fingerprint = {}
    for name in sorted(inspector.get_table_names()):
        table = sa.Table(name, sa.MetaData(), autoload_with=conn)
        key = list(table.primary_key.columns)
        digest = hashlib.sha256()
        rows = 0
        if key:
            result = conn.execution_options(yield_per=2000).execute(sa.select(table).order_by(*key))
            for row in result:
                digest.update(repr(tuple(row)).encode() + b"\n")
                rows += 1
        else:
            lines = sorted(repr(tuple(row)) for row in conn.execute(sa.select(table)))
            for line in lines:
                digest.update(line.encode() + b"\n")
            rows = len(lines)
        prints[name] = TableFingerprint(rows=rows, sha256=digest.hexdigest())
    return prints


def existing_tables(url: str) -> list[str]:
    """The tables the database at ``url`` holds (none: an empty database, or no SQLite file yet)."""
    if backend(url) == "sqlite":
        path = _sqlite_path(url)
        if not path.exists() or path.stat().st_size == 0:
            return []
    engine = sa.create_engine(url)
    try:
        return sorted(sa.inspect(engine).get_table_names())
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot open the database {mask_url(url)}: {redact(str(exc.orig))}") from None
    finally:
        engine.dispose()


def dump(url: str, folder: Path, *, timeout_s: float) -> tuple[str, Fingerprint]:
    """The database at ``url`` into ``folder`` (rules above); the dump's file name and its fingerprint."""
    kind = backend(url)
    target = folder / DUMP_NAMES[kind]
    if kind == "sqlite":
        source = _sqlite_path(url)
        if not source.exists():
            raise BackupError(f"the SQLite database {source} does not exist: nothing to back up")
        _sqlite_copy(source, target)
        engine = sa.create_engine(f"sqlite:///{target.as_posix()}")
        try:
            with engine.connect() as conn:
                return target.name, fingerprint(conn)
        finally:
            engine.dispose()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with conn.begin():
                snapshot = conn.execute(sa.text("SELECT pg_export_snapshot()")).scalar_one()
                prints = fingerprint(conn)
                _pg_tool("pg_dump", url, "--format=custom", f"--snapshot={snapshot}", "--file", str(target),
                         timeout_s=timeout_s)  # fmt: skip
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot read the database {mask_url(url)}: {redact(str(exc.orig))}") from None
    finally:
        engine.dispose()
    return target.name, prints


def restore(file: Path, url: str, *, timeout_s: float) -> Fingerprint:
    """The dump ``file`` into the empty database at ``url``; the restored database's fingerprint."""
    kind = backend(url)
    if kind == "sqlite":
        _sqlite_copy(file, _sqlite_path(url))
    else:
        _ensure_api_role(url)
        _pg_tool("pg_restore", url, "--single-transaction", "--exit-on-error", "--no-owner", str(file),
                 timeout_s=timeout_s)  # fmt: skip
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return fingerprint(conn)
    finally:
        engine.dispose()


# ---------------------------------------------------------------------- helpers
def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise ConfigError(f"DATABASE_URL={url!r} names no SQLite file; use sqlite:///path/to/tradeloop.db")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """One SQLite file into another with the online backup API (consistent while it is written)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with _closing(sqlite3.connect(source, timeout=30)) as src, _closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


@contextmanager
def _closing(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield conn
    finally:
        conn.close()


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URI for ``url`` without its password, and the environment that carries it."""
    parsed = make_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    plain = parsed.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _pg_tool(tool: str, url: str, *args: str, timeout_s: float) -> None:
    found = shutil.which(tool)
    if found is None:
        raise ConfigError(
            f"{tool} is not installed: install the PostgreSQL client of the server's major version "
            "(Debian: apt-get install postgresql-client)"
        )
    uri, env = _libpq(url)
    log.debug("%s %s --dbname %s", tool, " ".join(args), mask_url(uri))
    try:
        done = subprocess.run(
            [found, "--no-password", *args, "--dbname", uri],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BackupError(
            f"{tool} took longer than {timeout_s:g} s on {mask_url(url)}; raise TRADELOOP_BACKUP_TIMEOUT_S"
        ) from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackupError(f"{tool} of {mask_url(url)} failed: {redact(' / '.join(lines[-4:]))}")


def _ensure_api_role(url: str) -> None:
    """Make the API role a restored dump grants to, when this server lacks it (migration 0008's
    set-up; without the right to create roles, pg_restore then fails naming the role)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            if conn.execute(sa.text("SELECT to_regrole(:r) IS NULL"), {"r": API_ROLE}).scalar():
                allowed = conn.execute(
                    sa.text("SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user")
                ).scalar()
                if allowed:
                    conn.execute(sa.text(f"CREATE ROLE {API_ROLE} NOLOGIN"))
    except sa.exc.OperationalError as exc:
        raise BackupError(f"cannot open the database {mask_url(url)}: {redact(str(exc.orig))}") from None
    finally:
        engine.dispose()
