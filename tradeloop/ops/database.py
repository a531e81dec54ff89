"""Engines and migrations of the operational database, the startup check, and what counts
as "the server went away".

A lost connection (:func:`is_connection_error`) is transient: the live engine retries the
bar with backoff (``live.engine``). Anything else (a constraint, a bad query) is a bug and
propagates.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from tradeloop.errors import ConfigError
from tradeloop.redaction import mask_url

MIGRATIONS = Path(__file__).parent / "migrations"
# execution option: a SQLite transaction that will write after reading (a migration) begins
# IMMEDIATE; a deferred one fails at once with "database is locked" when another process wrote
# since its read (WAL snapshots), whatever the busy timeout
IMMEDIATE = "tradeloop_sqlite_immediate"
# PostgreSQL: migrations take this transaction-scoped advisory lock, so a second process waits
# and then finds the schema current (two at once both created the tables; the second failed)
MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"tradeloop:migrate").digest()[:8], "big", signed=True)
VERSION_TABLE = "tradeloop_alembic_version"  # optuna (RDB storage) keeps its own alembic_version beside it


def connect(url: str, *, connect_timeout_s: float = 10.0) -> Engine:
    """An engine for ``url``. SQLite gets WAL, synchronous=FULL (order state survives a power
    cut) and foreign keys; a busy file waits up to 10 s instead of failing. PostgreSQL gives
    up a connection attempt after ``connect_timeout_s`` and pings pooled connections."""
    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - a non-numeric port raises here, not at the first connection
    except (ArgumentError, ValueError):
        raise ConfigError(
            f"DATABASE_URL={mask_url(url)!r} is not a SQLAlchemy URL; use e.g. "
            "postgresql+psycopg://user@host:5432/db or sqlite:///data/tradeloop.db"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": 10})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record) -> None:
            # pysqlite opens transactions lazily and lets a SAVEPOINT run outside one, which
            # commits a nested write on its own (a fill without its order update: found by the
            # kill -9 test). SQLAlchemy's recipe: no driver transactions, an explicit BEGIN.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(connection) -> None:  # IMMEDIATE: take the write lock now, waiting out a busy file
            connection.exec_driver_sql(
                "BEGIN IMMEDIATE" if connection.get_execution_options().get(IMMEDIATE) else "BEGIN"
            )

        return engine
    if parsed.get_backend_name() == "postgresql":
        # keepalives and tcp_user_timeout: a server that vanished without closing the socket
        # (cable, failover) fails the query within ~30 s instead of hanging the engine
        return create_engine(
            parsed,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": max(2, round(connect_timeout_s)),
                "keepalives": 1,
                "keepalives_idle": 10,
                "keepalives_interval": 5,
                "keepalives_count": 3,
                "tcp_user_timeout": 30_000,
            },
        )
    raise ConfigError(
        f"DATABASE_URL backend {parsed.get_backend_name()!r} is not supported; use sqlite:/// or postgresql+psycopg://"
    )


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@functools.cache
def latest_revision() -> str | None:
    """The newest migration of the code this process runs (read once: the files on disk may
    be a newer release's by the time a long-running process asks again)."""
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def schema_behind(engine: Engine) -> tuple[str | None, str] | None:
    """``(stored revision, latest revision)`` when the database's schema is older than this
    code's (a reader that never migrates cannot read it), None when it is the latest."""
    head = latest_revision()
    with engine.connect() as conn:
        stored = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
    return None if stored == head else (stored, head or "")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic); safe to run on every start, also by several
    processes at once (the second waits for the first: SQLite's write lock, PostgreSQL's
    advisory lock :data:`MIGRATION_LOCK`)."""
    config = _alembic_config()
    alembic_log = logging.getLogger("alembic")
    if alembic_log.getEffectiveLevel() < logging.WARNING and not alembic_log.isEnabledFor(logging.DEBUG):
        alembic_log.setLevel(logging.WARNING)  # "Running upgrade ..." on every start is noise
    try:
        with engine.execution_options(**{IMMEDIATE: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise ConfigError(
            f"cannot reach the operational database {engine.url.render_as_string()}: {exc.orig}; check DATABASE_URL"
        ) from exc


def check_reachable(url: str, *, timeout_s: float = 5.0, variable: str = "DATABASE_URL") -> None:
    """Connect to ``url`` and run ``SELECT 1`` within ``timeout_s``; a failure is a
    ConfigError (exit 2) naming ``variable`` and the URL with its password masked."""
    engine = connect(url, connect_timeout_s=timeout_s)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise ConfigError(
            f"{variable}={mask_url(url)} is unreachable: {str(exc.orig).strip()}; start the server or fix {variable}"
        ) from None
    finally:
        engine.dispose()


def is_connection_error(exc: BaseException) -> bool:
    """True when ``exc`` means the database connection was lost or could not be made (the
    transaction did not commit; retrying later can succeed)."""
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError)
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        return False
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
