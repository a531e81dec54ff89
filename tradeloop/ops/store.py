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
from datetime import datetime
from functools import cache
from typing import Any, cast

import polars as pl
from sqlalchemy import CursorResult, Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tradeloop.errors import ConfigError, NotFoundError, SessionStateError
from tradeloop.observability.pool import watch_pool
from tradeloop.ops.database import IMMEDIATE, connect, migrate
from tradeloop.ops.identity_models import ExchangeCredential
from tradeloop.ops.models import (
    AuditEvent,
    Base,
    EngineLock,
    Fill,
    Order,
    OutboxEvent,
    Position,
    ThresholdInForce,
    TradingSession,
    utcnow,
)
from tradeloop.trading import TERMINAL, OrderStatus

# every status an order can still change from (``tradeloop.trading.order_state``)
OPEN_STATUSES = tuple(str(s) for s in OrderStatus if s not in TERMINAL)
# open on the venue's book: what the venue lists among its open orders
RESTING_STATUSES = (
    OrderStatus.ACKNOWLEDGED.value,
    OrderStatus.PARTIALLY_FILLED.value,
    OrderStatus.CANCEL_REQUESTED.value,
)


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


# a replay that reached the end of its data is "finished"; ``live run`` resumes it (running)
TRANSITIONS = {
    "running": {"paused", "stopped", "finished"},
    "paused": {"running", "stopped"},
    "finished": {"running", "stopped"},
    "stopped": set(),
}


class OpsStore:
    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._writers = sessionmaker(engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> OpsStore:
        """Connect and migrate to the latest schema."""
        engine = connect(url)
        migrate(engine)
        watch_pool("ops", engine)  # tradeloop_db_pool_* of this process (tradeloop.observability.pool)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self, *, immediate: bool = False) -> Iterator[Session]:
        """One transaction. ``immediate``: SQLite takes its write lock at the start, waiting out
        another writer (a transaction that reads, then writes, would otherwise fail with
        "database is locked" when a concurrent one wrote first); PostgreSQL: no difference."""
        with (self._writers if immediate else self._sessions).begin() as db:
            yield db

    # ------------------------------------------------------------------ sessions
    @staticmethod
    def _hold_credential(db: Session, credential_id: int) -> None:
        """Lock the credential a new session names until its transaction ends: a concurrent
        removal (``CredentialStore.remove``, which locks it first) waits and then sees the new
        session, or has removed it already and the session is refused (``NotFoundError``)."""
        held = select(ExchangeCredential.id).where(ExchangeCredential.id == credential_id).with_for_update()
        if db.scalar(held) is None:
            raise NotFoundError(
                f"exchange credential id {credential_id} was removed while the session was being made; store it "
                "again (POST /credentials) or name another one"
            )

    def create_session(
        self,
        *,
        name: str,
        strategy: str,
        exchange: str,
        timeframe: str,
        symbols: list[str],
        mode: str,
        init_cash: float,
        config: dict[str, Any],
        in_sample: bool = False,
        in_sample_detail: dict[str, Any] | None = None,
        risk_config: dict[str, Any] | None = None,
        owner_id: int | None = None,
        actor: str | None = None,
        credential_id: int | None = None,
        adaptation: dict[str, Any] | None = None,
    ) -> TradingSession:
        """A new running session of ``owner_id`` with its ``session_started`` audit row (by ``actor``).
        ``adaptation``: its threshold adaptation's ``OnlineConfig`` as JSON (None: it does not
        adapt), in an audit row ``threshold_adaptation_on`` (``tradeloop.ops.adaptation``).
        ``in_sample``: it trades bars its champion was trained on (allowed by the operator); an audit
        row ``session_in_sample`` records that, with ``in_sample_detail`` (e.g. first bar, training end)."""
        if mode not in ("paper", "live"):
            raise ConfigError(f"mode={mode!r} is not a trading mode; use 'paper' or 'live'")
        with self.transaction(immediate=True) as db:
            if db.scalar(select(TradingSession).where(TradingSession.name == name)) is not None:
                raise SessionStateError(f"session {name!r} already exists; resume it or pick another --name")
            if credential_id is not None:
                self._hold_credential(db, credential_id)
            row = TradingSession(
                name=name,
                strategy=strategy,
                exchange=exchange,
                timeframe=timeframe,
                symbols=list(symbols),
                mode=mode,
                status="running",
                init_cash=init_cash,
                cash=init_cash,
                config=config,
                in_sample=in_sample,
                risk_config=risk_config,
                owner_id=owner_id,
                credential_id=credential_id,
            )
            db.add(row)
            db.flush()
            self.audit(
                db,
                "session_started",
                session_id=row.id,
                detail={"symbols": list(symbols), "mode": mode, "in_sample": in_sample, "risk": risk_config},
                actor=actor,
            )
            if in_sample:
                self.audit(db, "session_in_sample", session_id=row.id, detail=in_sample_detail or {}, actor=actor)
            if adaptation is not None:
                self.audit(db, "threshold_adaptation_on", session_id=row.id, detail={"config": adaptation}, actor=actor)
            return row

    def session(self, name: str) -> TradingSession:
        with self._sessions() as db:
            row = db.scalar(select(TradingSession).where(TradingSession.name == name))
        if row is None:
            known = ", ".join(s.name for s in self.sessions()) or "none yet"
            raise SessionStateError(
                f"no trading session named {name!r} (known: {known}); start one with `tradeloop live run --name ...`"
            )
        return row

    def sessions(self) -> list[TradingSession]:
        with self._sessions() as db:
            return list(db.scalars(select(TradingSession).order_by(TradingSession.id)))

    def set_status(self, name: str, status: str, *, actor: str | None = None) -> TradingSession:
        """running -> paused -> running, and any -> stopped (final): ``TRANSITIONS``; audited by ``actor``."""
        with self.transaction() as db:
            row = db.scalar(select(TradingSession).where(TradingSession.name == name).with_for_update())
            if row is None:
                raise SessionStateError(f"no trading session named {name!r}")
            if status != row.status and status not in TRANSITIONS[row.status]:
                raise SessionStateError(
                    f"session {name!r} is {row.status}; it cannot become {status}"
                    + (" (a stopped session is final: start a new one)" if row.status == "stopped" else "")
                    + f"; from {row.status} it can become {', '.join(sorted(TRANSITIONS[row.status])) or 'nothing'}"
                )
            row.status = status
            self.audit(db, f"session_{status}", session_id=row.id, actor=actor)
            return row

    def finish(self, session_id: int) -> bool:
        """running -> finished: the replay reached the end of its data. False (nothing written)
        when an operator paused or stopped the session: a pause outlives the data (a later
        ``live run`` must not lift it), a stop is final."""
        with self.transaction() as db:
            row = db.get(TradingSession, session_id, with_for_update=True)
            if row is None or row.status != "running":
                return False
            row.status, row.heartbeat_at = "finished", None
            self.audit(db, "session_finished", session_id=row.id, detail={"last_bar_ts": row.last_bar_ts})
            return True

    def beat(self, session_id: int, *, alive: bool = True) -> None:
        """The engine's heartbeat (``alive=False``: it exits; readers then see ``stale``)."""
        with self.transaction() as db:
            db.execute(
                update(TradingSession)
                .where(TradingSession.id == session_id)
                .values(heartbeat_at=utcnow() if alive else None)
            )

    # ------------------------------------------------------------------ engine locks (holders)
    def lock_holder(self, key: str) -> EngineLock | None:
        with self._sessions() as db:
            return db.get(EngineLock, key)

    def record_lock_holder(self, key: str, *, host: str, pid: int) -> None:
        """Name the holder of ``key`` (called by whoever just took the lock itself)."""
        with self.transaction() as db:
            db.merge(EngineLock(key=key, host=host, pid=pid, since=utcnow()))

    def forget_lock_holder(self, key: str, *, pid: int) -> None:
        with self.transaction() as db:
            row = db.get(EngineLock, key)
            if row is not None and row.pid == pid:
                db.delete(row)

    # ------------------------------------------------------------------ outbox (events for the bus)
    @staticmethod
    def add_event(db: Session, stream: str, payload: dict, *, session_id: int | None) -> None:
        """An event for the bus, committed with the bar that produced it (``live.outbox`` relays it)."""
        db.add(OutboxEvent(session_id=session_id, stream=stream, payload=payload))

    def unrelayed_events(self, session_id: int | None, *, limit: int = 500) -> list[OutboxEvent]:
        """Events not relayed yet, oldest first (id order: commit order within a session)."""
        with self._sessions() as db:
            query = select(OutboxEvent).where(OutboxEvent.relayed_at.is_(None))
            if session_id is not None:
                query = query.where(OutboxEvent.session_id == session_id)
            return list(db.scalars(query.order_by(OutboxEvent.id).limit(limit)))

    def mark_relayed(self, ids: list[int]) -> None:
        if ids:
            with self.transaction() as db:
                db.execute(update(OutboxEvent).where(OutboxEvent.id.in_(ids)).values(relayed_at=utcnow()))

    def prune_outbox(self, *, relayed_before: datetime) -> int:
        """Delete events relayed before ``relayed_before``; the number deleted."""
        with self.transaction() as db:
            # a DELETE's result is a CursorResult (rowcount); Session.execute is typed for any statement
            result = cast(
                CursorResult[Any],
                db.execute(
                    delete(OutboxEvent).where(
                        OutboxEvent.relayed_at.is_not(None), OutboxEvent.relayed_at < relayed_before
                    )
                ),
            )
            return result.rowcount or 0

    # ------------------------------------------------------------------ halts and acknowledgements
    @staticmethod
    def halt_symbol(db: Session, session_id: int, symbol: str, reason: str, *, order_id: int | None = None) -> bool:
        """Put ``symbol`` in reduce-only (``sessions.halted``) with an audit row ``symbol_halted``;
        False when it was halted already (nothing written). Only an operator lifts a halt."""
        row = db.get(TradingSession, session_id, with_for_update=True)
        if row is None or symbol in (row.halted or {}):
            return False
        row.halted = {**(row.halted or {}), symbol: reason[:200]}  # a new dict: JSON columns track assignment
        OpsStore.audit(
            db,
            "symbol_halted",
            session_id=session_id,
            order_id=order_id,
            detail={"symbol": symbol, "reason": reason[:200]},
        )
        return True

    @staticmethod
    def session_row(db: Session, session_id: int, *, for_update: bool = False) -> TradingSession:
        """The session's row inside a transaction (``for_update``: locked until it commits)."""
        row = db.get(TradingSession, session_id, with_for_update=for_update)
        if row is None:
            raise SessionStateError(f"no trading session with id {session_id}; it was deleted while the engine ran")
        return row

    @staticmethod
    def require_ack(db: Session, session_id: int, reason: str, *, event: str, detail: dict) -> bool:
        """Put the whole session in reduce-only until ``tradeloop live ack``, with an audit row
        ``event``; False when it already waits for an acknowledgement (nothing written)."""
        row = db.get(TradingSession, session_id, with_for_update=True)
        if row is None or row.needs_ack is not None:
            return False
        row.needs_ack = reason[:300]
        OpsStore.audit(db, event, session_id=session_id, detail=detail)
        return True

    def acknowledge(self, name: str, *, symbol: str | None = None, actor: str | None = None) -> TradingSession:
        """An operator's acknowledgement: without ``symbol`` it clears the session's ``needs_ack``
        (and its venue balance baseline, so the venue's balances as they are now become the new
        reference); with ``symbol`` it lifts that symbol's halt, refused while one of its orders
        is still ``unknown``. Either way an audit row names the actor."""
        with self.transaction() as db:
            row = db.scalar(select(TradingSession).where(TradingSession.name == name).with_for_update())
            if row is None:
                raise SessionStateError(f"no trading session named {name!r}")
            if row.status == "stopped":
                raise SessionStateError(
                    f"session {name!r} is stopped (final): there is nothing to acknowledge; "
                    "start a new session with another --name"
                )
            if symbol is None:
                if row.needs_ack is None:
                    raise SessionStateError(
                        f"session {name!r} is not waiting for an acknowledgement"
                        + (f"; halted symbols: {sorted(row.halted)} (lift one with --symbol)" if row.halted else "")
                    )
                self.audit(
                    db, "session_acknowledged", session_id=row.id, actor=actor, detail={"needs_ack": row.needs_ack}
                )
                row.needs_ack, row.venue_baseline = None, None
                return row
            halted = dict(row.halted or {})
            if symbol not in halted:
                raise SessionStateError(
                    f"symbol {symbol!r} of session {name!r} is not halted (halted: {sorted(halted) or 'none'})"
                )
            unknown = db.scalars(
                select(Order.client_order_id).where(
                    Order.session_id == row.id, Order.symbol == symbol, Order.status == "unknown"
                )
            ).all()
            if unknown:
                raise SessionStateError(
                    f"order(s) {list(unknown)} on {symbol} still have an unknown outcome; the "
                    "engine resolves them once the venue answers, then ack the symbol"
                )
            reason = halted.pop(symbol)
            row.halted = halted
            self.audit(
                db, "symbol_resumed", session_id=row.id, actor=actor, detail={"symbol": symbol, "halted_for": reason}
            )
            return row

    # ------------------------------------------------------------------ writes inside a bar
    @staticmethod
    def audit(
        db: Session,
        event: str,
        *,
        session_id: int | None = None,
        order_id: int | None = None,
        detail: dict | None = None,
        actor: str | None = None,
    ) -> None:
        """Append an audit row (the table refuses UPDATE and DELETE: see migration 0002)."""
        db.add(
            AuditEvent(
                event=event,
                session_id=session_id,
                order_id=order_id,
                detail=detail or {},
                actor=actor or default_actor(),
            )
        )

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

    def position_rows(self, session_id: int) -> list[Position]:
        """Every position row of the session, one per instrument (venue, symbol): a session on
        several venues may hold the same symbol on two of them."""
        with self._sessions() as db:
            return list(db.scalars(select(Position).where(Position.session_id == session_id)))

    def fills(self, session_id: int) -> list[Fill]:
        with self._sessions() as db:
            return list(db.scalars(select(Fill).where(Fill.session_id == session_id).order_by(Fill.id)))

    def thresholds(self, session_id: int) -> list[ThresholdInForce]:
        with self._sessions() as db:
            return list(
                db.scalars(
                    select(ThresholdInForce)
                    .where(ThresholdInForce.session_id == session_id)
                    .order_by(ThresholdInForce.id)
                )
            )

    def audit_log(self, session_id: int | None = None, *, events: tuple[str, ...] | None = None) -> list[AuditEvent]:
        """Audit rows, oldest first: of one session, and/or only the ``events`` named."""
        with self._sessions() as db:
            query = select(AuditEvent)
            if session_id is not None:
                query = query.where(AuditEvent.session_id == session_id)
            if events is not None:
                query = query.where(AuditEvent.event.in_(events))
            return list(db.scalars(query.order_by(AuditEvent.id)))

    def frame(self, model: type[Base], session_id: int) -> pl.DataFrame:
        """A table's rows of one session (its ``session_id`` column) as a polars frame (for the dashboard)."""
        table = model.__table__
        columns = list(table.columns)
        with self.engine.connect() as conn:
            rows = conn.execute(select(*columns).where(table.c.session_id == session_id)).all()
        return pl.DataFrame([tuple(r) for r in rows], schema=[c.name for c in columns], orient="row")
