"""OpsStore: the operational database's read and write paths.

Writers (the live engine) do their work for one bar inside :meth:`OpsStore.transaction`,
so a bar's fills, positions, equity mark, new orders and ``last_bar_ts`` commit together or
not at all. Readers (dashboard, CLI) use the query helpers and never write.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import polars as pl
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tradeloop.errors import ConfigError, SessionStateError
from tradeloop.ops.database import connect, migrate
from tradeloop.ops.models import AuditEvent, EquityPoint, Fill, Order, Position, ThresholdInForce, TradingSession

OPEN_STATUSES = ("new", "submitted", "unknown")


@cache
def default_actor() -> str:
    """Who writes audit rows from this process: ``TRADELOOP_ACTOR`` (the API sets its user),
    else the OS user and host (the CLI, the engine)."""
    explicit = os.environ.get("TRADELOOP_ACTOR")
    if explicit:
        return explicit[:200]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (containers)
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:200]
TRANSITIONS = {"running": {"paused", "stopped"}, "paused": {"running", "stopped"}, "stopped": set()}


class OpsStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> OpsStore:
        """Connect and migrate to the latest schema."""
        engine = connect(url)
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as db:
            yield db

    # ------------------------------------------------------------------ sessions
    def create_session(self, *, name: str, strategy: str, exchange: str, timeframe: str, symbols: list[str],
                       mode: str, init_cash: float, config: dict[str, Any]) -> TradingSession:
        if mode not in ("paper", "live"):
            raise ConfigError(f"mode={mode!r} is not a trading mode; use 'paper' or 'live'")
        with self.transaction() as db:
            if db.scalar(select(TradingSession).where(TradingSession.name == name)) is not None:
                raise SessionStateError(f"session {name!r} already exists; resume it or pick another --name")
            row = TradingSession(name=name, strategy=strategy, exchange=exchange, timeframe=timeframe,
                                 symbols=list(symbols), mode=mode, status="running", init_cash=init_cash,
                                 cash=init_cash, config=config)
            db.add(row)
            db.flush()
            self.audit(db, "session_started", session_id=row.id, detail={"symbols": list(symbols), "mode": mode})
            return row

    def session(self, name: str) -> TradingSession:
        with self._sessions() as db:
            row = db.scalar(select(TradingSession).where(TradingSession.name == name))
        if row is None:
            known = ", ".join(s.name for s in self.sessions()) or "none yet"
            raise SessionStateError(f"no trading session named {name!r} (known: {known}); start one with "
                                    "`tradeloop live run --name ...`")
        return row

    def sessions(self) -> list[TradingSession]:
        with self._sessions() as db:
            return list(db.scalars(select(TradingSession).order_by(TradingSession.id)))

    def set_status(self, name: str, status: str) -> TradingSession:
        """running -> paused -> running, and any -> stopped (final)."""
        with self.transaction() as db:
            row = db.scalar(select(TradingSession).where(TradingSession.name == name).with_for_update())
            if row is None:
                raise SessionStateError(f"no trading session named {name!r}")
            if status != row.status and status not in TRANSITIONS[row.status]:
                raise SessionStateError(f"session {name!r} is {row.status}; it cannot become {status}"
                                        + (" (a stopped session is final: start a new one)"
                                           if row.status == "stopped" else ""))
            row.status = status
            self.audit(db, f"session_{status}", session_id=row.id)
            return row

    # ------------------------------------------------------------------ writes inside a bar
    @staticmethod
    def audit(db: Session, event: str, *, session_id: int | None = None, order_id: int | None = None,
              detail: dict | None = None, actor: str | None = None) -> None:
        """Append an audit row (the table refuses UPDATE and DELETE: see migration 0002)."""
        db.add(AuditEvent(event=event, session_id=session_id, order_id=order_id, detail=detail or {},
                          actor=actor or default_actor()))

    @staticmethod
    def add_fill(db: Session, fill: Fill) -> bool:
        """Store a fill unless (venue, symbol, trade id) is already there; True when new."""
        try:
            with db.begin_nested():
                db.add(fill)
            return True
        except IntegrityError:
            return False

    # ------------------------------------------------------------------ reads
    def orders(self, session_id: int, *, statuses: tuple[str, ...] | None = None) -> list[Order]:
        with self._sessions() as db:
            query = select(Order).where(Order.session_id == session_id)
            if statuses:
                query = query.where(Order.status.in_(statuses))
            return list(db.scalars(query.order_by(Order.id)))

    def positions(self, session_id: int) -> dict[str, Position]:
        with self._sessions() as db:
            return {p.symbol: p for p in db.scalars(select(Position).where(Position.session_id == session_id))}

    def fills(self, session_id: int) -> list[Fill]:
        with self._sessions() as db:
            return list(db.scalars(select(Fill).where(Fill.session_id == session_id).order_by(Fill.id)))

    def thresholds(self, session_id: int) -> list[ThresholdInForce]:
        with self._sessions() as db:
            return list(db.scalars(select(ThresholdInForce).where(ThresholdInForce.session_id == session_id)
                                   .order_by(ThresholdInForce.id)))

    def audit_log(self, session_id: int | None = None) -> list[AuditEvent]:
        with self._sessions() as db:
            query = select(AuditEvent)
            if session_id is not None:
                query = query.where(AuditEvent.session_id == session_id)
            return list(db.scalars(query.order_by(AuditEvent.id)))

    def frame(self, model: type, session_id: int) -> pl.DataFrame:
        """A table's rows of one session as a polars frame (for the dashboard)."""
        columns = list(model.__table__.columns)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(model.session_id == session_id)).all()
        return pl.DataFrame([tuple(r) for r in rows], schema=[c.name for c in columns], orient="row")
