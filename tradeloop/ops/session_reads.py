"""Pages of trading sessions and their records, for readers that list them (the API).

Rules:

1. A page holds at most ``limit`` rows after the cursor ``after`` (the ``id`` of the last
   row the reader saw; equity marks: its ``ts``), oldest first.
2. Time bounds are inclusive epoch milliseconds: sessions by when they were created, orders
   by the bar that decided them (``decided_ts``), fills by their ``ts``, equity marks by their
   bar (``ts``), audit rows by when they were written (``at``).
3. Owners: :meth:`SessionReads.sessions` lists one owner's sessions, or every session for
   ``owner_id=None`` (an admin). Sessions made before there were users have no owner and
   are listed only for everyone. Whether a reader may see a session is the caller's rule
   (``api.deps.Principal.can_see``); the record reads take a session id already checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select

from tradeloop.ops.models import AuditEvent, EquityPoint, Fill, Order, TradingSession
from tradeloop.ops.store import OpsStore


@dataclass(frozen=True, kw_only=True, slots=True)
class Page:
    """Which rows of a list to read (rules 1 and 2)."""

    limit: int = 100
    after: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _paged(query: Select[Any], key: Any, page: Page, time: Any, *, as_datetime: bool = False) -> Select[Any]:
    """``query`` cut to ``page``: after the cursor on ``key``, within the bounds on ``time``."""
    if page.after is not None:
        query = query.where(key > page.after)
    if page.since_ms is not None:
        query = query.where(time >= (_at(page.since_ms) if as_datetime else page.since_ms))
    if page.until_ms is not None:
        query = query.where(time <= (_at(page.until_ms) if as_datetime else page.until_ms))
    return query.order_by(key).limit(page.limit)


class SessionReads:
    """Read-only pages over an :class:`OpsStore`."""

    def __init__(self, store: OpsStore):
        self.store = store

    def sessions(self, page: Page, *, owner_id: int | None, status: str | None = None) -> list[TradingSession]:
        """``owner_id``'s sessions (None: everyone's), by id (rule 3); ``status``: stored so."""
        query = select(TradingSession)
        if owner_id is not None:
            query = query.where(TradingSession.owner_id == owner_id)
        if status is not None:
            query = query.where(TradingSession.status == status)
        with self.store.transaction() as db:
            query = _paged(query, TradingSession.id, page, TradingSession.created_at, as_datetime=True)
            return list(db.scalars(query))

    def last_equity(self, session_ids: Sequence[int]) -> dict[int, float]:
        """Each session's newest equity mark (sessions without one are left out)."""
        if not session_ids:
            return {}
        newest = (
            select(EquityPoint.session_id, func.max(EquityPoint.ts).label("ts"))
            .where(EquityPoint.session_id.in_(session_ids))
            .group_by(EquityPoint.session_id)
            .subquery()
        )
        query = (  # both sides bounded by the ids: under row-level security an unbounded side scanned every row
            select(EquityPoint.session_id, EquityPoint.equity)
            .join(newest, (EquityPoint.session_id == newest.c.session_id) & (EquityPoint.ts == newest.c.ts))
            .where(EquityPoint.session_id.in_(session_ids))
        )
        with self.store.transaction() as db:
            return {sid: equity for sid, equity in db.execute(query).all()}

    def orders(
        self, session_id: int, page: Page, *, statuses: Sequence[str] | None = None, symbol: str | None = None
    ) -> list[Order]:
        query = select(Order).where(Order.session_id == session_id)
        if statuses:
            query = query.where(Order.status.in_(list(statuses)))
        if symbol is not None:
            query = query.where(Order.symbol == symbol)
        with self.store.transaction() as db:
            return list(db.scalars(_paged(query, Order.id, page, Order.decided_ts)))

    def fills(self, session_id: int, page: Page, *, symbol: str | None = None) -> list[Fill]:
        query = select(Fill).where(Fill.session_id == session_id)
        if symbol is not None:
            query = query.where(Fill.symbol == symbol)
        with self.store.transaction() as db:
            return list(db.scalars(_paged(query, Fill.id, page, Fill.ts)))

    def equity(self, session_id: int, page: Page) -> list[EquityPoint]:
        query = select(EquityPoint).where(EquityPoint.session_id == session_id)
        with self.store.transaction() as db:
            return list(db.scalars(_paged(query, EquityPoint.ts, page, EquityPoint.ts)))

    def audit(self, session_id: int, page: Page, *, events: Sequence[str] | None = None) -> list[AuditEvent]:
        query = select(AuditEvent).where(AuditEvent.session_id == session_id)
        if events:
            query = query.where(AuditEvent.event.in_(list(events)))
        with self.store.transaction() as db:
            return list(db.scalars(_paged(query, AuditEvent.id, page, AuditEvent.at, as_datetime=True)))
