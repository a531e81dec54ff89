"""Time filters and session ownership shared by the list endpoints of models, thresholds,
market data and signals.

``since`` and ``until`` are epoch milliseconds (``1704067200000``) or ISO 8601 datetimes
(``2024-01-01T00:00:00Z``; no zone: UTC), both bounds inclusive. Anything else is a 422
problem naming the parameter, the value and the two accepted forms.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query

from api.context import ApiContext
from api.deps import Principal
from tradeloop.errors import ConfigError, NotFoundError
from tradeloop.ops import TradingSession

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z: the last moment a datetime can hold
WHEN = "epoch milliseconds or an ISO 8601 datetime (UTC when no zone), inclusive"
Since = Annotated[
    str | None, Query(max_length=40, description=f"from this time: {WHEN}", examples=["2024-01-01T00:00:00Z"])
]
Until = Annotated[str | None, Query(max_length=40, description=f"up to this time: {WHEN}", examples=["1735689600000"])]
SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the session's id (GET /sessions lists them)")]


def to_ms(value: str | None, *, field: str) -> int | None:
    """``value`` (epoch ms or ISO 8601) as epoch ms; None for None or an empty string."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    fix = "give epoch milliseconds (e.g. 1704067200000) or an ISO 8601 datetime (e.g. 2024-01-01T00:00:00Z)"
    if text.isascii() and text.isdigit():
        ms = int(text)
    else:
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ConfigError(f"query.{field}={value!r} is not a time; {fix}") from None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        ms = int(moment.timestamp() * 1000)
    if not 0 <= ms <= MAX_MS:
        raise ConfigError(f"query.{field}={value!r} is outside 1970-01-01 .. 9999-12-31; {fix}")
    return ms


def window(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """``since`` and ``until`` as epoch ms; refused when ``since`` is after ``until``."""
    lo, hi = to_ms(since, field="since"), to_ms(until, field="until")
    if lo is not None and hi is not None and lo > hi:
        raise ConfigError(f"query.since={since!r} is after query.until={until!r}; swap them or widen the window")
    return lo, hi


def as_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def owned_session(ctx: ApiContext, principal: Principal, session_id: int) -> TradingSession:
    """The session ``session_id`` when the caller owns it (or is an admin); else a 404 that does
    not say whether it exists."""
    with ctx.store.transaction() as db:
        row = db.get(TradingSession, session_id)
    if row is None or not principal.can_see(row.owner_id):
        raise NotFoundError(f"session {session_id} does not exist; GET /sessions lists the sessions you can see")
    return row
