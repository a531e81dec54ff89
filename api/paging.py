"""Pages of the list endpoints of sessions and their records.

A list is read in pages of ``limit`` rows (1 to 500, default 100), oldest first; a page's
``next_after`` is the cursor to send as ``after_id`` (equity marks: ``after_ts``) for the next
page, null on the last one. ``since`` and ``until`` bound the rows' time
(``api.timequery``: epoch milliseconds or ISO datetimes, inclusive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from api.timequery import Since, Until, window
from tradeloop.ops.session_reads import Page

T = TypeVar("T")
R = TypeVar("R")
Limit = Annotated[int, Query(ge=1, le=500, description="most rows in the page")]
MAX_ID = 2**31 - 1  # the id columns are 32-bit


class Paged(BaseModel, Generic[T]):
    """A page of a list, oldest first."""

    items: list[T]
    next_after: int | None = Field(
        description="the cursor of the next page (send it as after_id; equity: after_ts); null: the last page"
    )


def invalid_all(problems: Sequence[tuple[str, Any, str]]) -> RequestValidationError:
    """One 422 problem listing every ``(field, value, fix)`` (field: ``body.risk.max_drawdown``)."""
    return RequestValidationError(
        [{"loc": tuple(f.split(".")), "input": value, "msg": fix, "type": "value_error"} for f, value, fix in problems]
    )


def by_id(
    limit: Limit = 100,
    after_id: Annotated[int | None, Query(ge=0, le=MAX_ID, description="the next_after of the page before")] = None,
    since: Since = None,
    until: Until = None,
) -> Page:
    """A dependency: the page asked for, by row id."""
    since_ms, until_ms = window(since, until)
    return Page(limit=limit, after=after_id, since_ms=since_ms, until_ms=until_ms)


def by_ts(
    limit: Limit = 100,
    after_ts: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="the next_after of the page before (a mark's ts)")
    ] = None,
    since: Since = None,
    until: Until = None,
) -> Page:
    """A dependency: the page asked for, by bar time (equity marks are keyed by their bar)."""
    since_ms, until_ms = window(since, until)
    return Page(limit=limit, after=after_ts, since_ms=since_ms, until_ms=until_ms)


IdPage = Annotated[Page, Depends(by_id)]
TsPage = Annotated[Page, Depends(by_ts)]


def paged(rows: Sequence[R], page: Page, out: Callable[[R], T], cursor: Callable[[R], int]) -> Paged[T]:
    """``rows`` (one page, read with ``page``) as a :class:`Paged` response."""
    last = cursor(rows[-1]) if rows and len(rows) == page.limit else None
    return Paged[T](items=[out(r) for r in rows], next_after=last)
