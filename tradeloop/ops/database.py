"""Engines and migrations of the operational database."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from tradeloop.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"


def connect(url: str) -> Engine:
    """An engine for ``url``. SQLite gets WAL, synchronous=FULL (order state survives a power
    cut) and foreign keys; a busy file waits up to 10 s instead of failing."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"DATABASE_URL={url!r} is not a SQLAlchemy URL; use e.g. "
                          "postgresql+psycopg://user@host:5432/db or sqlite:///data/tradeloop.db") from None
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
        def _begin(connection) -> None:
            connection.exec_driver_sql("BEGIN")

        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise ConfigError(f"DATABASE_URL backend {parsed.get_backend_name()!r} is not supported; "
                      "use sqlite:/// or postgresql+psycopg://")


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic); safe to run on every start."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    alembic_log = logging.getLogger("alembic")
    if alembic_log.getEffectiveLevel() < logging.WARNING and not alembic_log.isEnabledFor(logging.DEBUG):
        alembic_log.setLevel(logging.WARNING)  # "Running upgrade ..." on every start is noise
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except OperationalError as exc:
        raise ConfigError(f"cannot reach the operational database {engine.url.render_as_string()}: "
                          f"{exc.orig}; check DATABASE_URL") from exc
