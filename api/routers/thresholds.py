"""Thresholds in force: what decided a session's entries from when, and an operator's override.

The rows are the session's ``thresholds`` table (``ThresholdInForce``): the engine records
what decides (source ``model``: its champion, with the threshold it uses; ``static``: the
reduce-only fallback) from the bar it switched, and this API records each request (source
``override`` with its threshold, ``revert`` back to the model's own). A request is in force
from the engine's next bar; every one is audited (``threshold_override`` /
``threshold_revert``: actor, old and new value, reason) besides the request's own audit row.
The rules are ``tradeloop.ops.overrides``'.

A session made with ``adapt_thresholds`` moves its threshold from closed trades' outcomes (rows
``online``, ``tradeloop.ops.adaptation``); an operator freezes it (``freeze``: the threshold
stays, outcomes are not learned from) and unfreezes it, each audited (``threshold_freeze`` /
``threshold_unfreeze``) and in force from the engine's next bar; ``revert`` puts the model's
own threshold back and restarts the adaptation from it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.context import ApiContext
from api.deps import Context, Trader, Viewer
from api.timequery import SessionId, Since, Until, as_datetime, owned_session, window
from tradeloop.errors import TradeloopError
from tradeloop.ops import ThresholdInForce, TradingSession
from tradeloop.ops.adaptation import adaptation_config, is_frozen, set_frozen
from tradeloop.ops.overrides import override_in_force, revert_override, set_override
from tradeloop.registry import ModelRegistry

router = APIRouter(prefix="/sessions", tags=["thresholds"])


class ThresholdRow(BaseModel):
    id: int = Field(description="the row's id (newer rows have larger ids)")
    source: str = Field(
        description="model: the champion decides (threshold: the one it uses); static: reduce-only fallback; "
        "online: the adaptation moved the threshold from closed outcomes; override / revert / freeze / unfreeze: "
        "an operator's request, in force from the engine's next bar",
        examples=["model"],
    )
    artifact: str | None = Field(default=None, description="the champion's artifact id (source model)")
    threshold: float | None = Field(default=None, description="the probability an entry must beat; None: unknown")
    reason: str = Field(description="why, in words", examples=["champion 3f1c2a9b0d4e"])
    since: datetime = Field(description="when it was recorded (UTC, wall clock)")
    bar_ts: int | None = Field(default=None, description="the first bar (open time, ms) it decided; None: a request")


class OverrideOut(BaseModel):
    threshold: float = Field(description="the threshold asked for")
    reason: str
    row_id: int = Field(description="the override row's id")


class ThresholdPage(BaseModel):
    items: list[ThresholdRow] = Field(description="newest first")
    override: OverrideOut | None = Field(
        default=None, description="the override in force (or pending until the next bar); None: the model's own"
    )
    next_before_id: int | None = Field(
        default=None, description="pass as before_id for the next (older) page; None: this was the last"
    )
    adapting: bool = Field(default=False, description="the session adapts its threshold from closed outcomes")
    frozen: bool = Field(default=False, description="an operator froze the adaptation (from the engine's next bar)")


class OverrideIn(BaseModel):
    threshold: float = Field(ge=0.0, le=1.0, description="p*: the probability an entry must beat", examples=[0.55])
    reason: str = Field(min_length=3, max_length=200, examples=["volatile news day: take only the surest entries"])


class RevertIn(BaseModel):
    reason: str = Field(min_length=3, max_length=200, examples=["news day over"])


class FreezeIn(BaseModel):
    reason: str = Field(min_length=3, max_length=200, examples=["regime change: hold the threshold while we look"])


def _row(row: ThresholdInForce) -> ThresholdRow:
    return ThresholdRow(
        id=row.id, source=row.source, artifact=row.artifact, threshold=row.threshold, reason=row.reason,
        since=row.since, bar_ts=row.bar_ts,
    )  # fmt: skip


def _model_threshold(ctx: ApiContext, session: TradingSession) -> float | None:
    """The champion's own learned threshold (None when there is none or it does not load)."""
    try:
        _, model = ModelRegistry(ctx.settings.registry_dir).load(session.strategy)
    except TradeloopError:
        return None
    return float(model.estimator.threshold_)


@router.get(
    "/{session_id}/thresholds",
    response_model=ThresholdPage,
    summary="What decided the session's entries from when, newest first, and the override in force",
)
def list_thresholds(
    session_id: SessionId,
    principal: Viewer,
    ctx: Context,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=500, description="rows per page")] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="rows older than this id")] = None,
) -> ThresholdPage:
    owned_session(ctx, principal, session_id)
    lo, hi = window(since, until)
    query = select(ThresholdInForce).where(ThresholdInForce.session_id == session_id)
    if lo is not None:
        query = query.where(ThresholdInForce.since >= as_datetime(lo))
    if hi is not None:
        query = query.where(ThresholdInForce.since <= as_datetime(hi))
    if before_id is not None:
        query = query.where(ThresholdInForce.id < before_id)
    with ctx.store.transaction() as db:
        rows = list(db.scalars(query.order_by(ThresholdInForce.id.desc()).limit(limit + 1)))
        override = override_in_force(db, session_id)
        adapting, frozen = adaptation_config(db, session_id) is not None, is_frozen(db, session_id)
    more = len(rows) > limit
    rows = rows[:limit]
    return ThresholdPage(
        items=[_row(r) for r in rows],
        override=OverrideOut(threshold=override.threshold, reason=override.reason, row_id=override.row_id)
        if override
        else None,
        next_before_id=rows[-1].id if more else None,
        adapting=adapting,
        frozen=frozen,
    )


@router.post(
    "/{session_id}/thresholds/override",
    response_model=ThresholdRow,
    summary="Decide the session's entries with this threshold from its next bar (audited)",
    responses={409: {"description": "the session is stopped or finished"}},
)
def override_threshold(session_id: SessionId, body: OverrideIn, principal: Trader, ctx: Context) -> ThresholdRow:
    session = owned_session(ctx, principal, session_id)
    own = _model_threshold(ctx, session)
    with ctx.store.transaction() as db:
        row = set_override(
            db, session_id, threshold=body.threshold, reason=body.reason, actor=principal.actor, model_threshold=own
        )
    return _row(row)


@router.post(
    "/{session_id}/thresholds/revert",
    response_model=ThresholdRow,
    summary="Back to the model's own threshold from the session's next bar (audited)",
    responses={409: {"description": "no override is in force, or the session is stopped or finished"}},
)
def revert_threshold(session_id: SessionId, body: RevertIn, principal: Trader, ctx: Context) -> ThresholdRow:
    session = owned_session(ctx, principal, session_id)
    own = _model_threshold(ctx, session)
    with ctx.store.transaction() as db:
        row = revert_override(db, session_id, reason=body.reason, actor=principal.actor, model_threshold=own)
    return _row(row)


@router.post(
    "/{session_id}/thresholds/freeze",
    response_model=ThresholdRow,
    summary="Freeze the session's threshold adaptation from its next bar (audited)",
    responses={409: {"description": "the session does not adapt, is frozen already, or is stopped or finished"}},
)
def freeze_threshold(session_id: SessionId, body: FreezeIn, principal: Trader, ctx: Context) -> ThresholdRow:
    owned_session(ctx, principal, session_id)
    with ctx.store.transaction() as db:
        row = set_frozen(db, session_id, frozen=True, reason=body.reason, actor=principal.actor)
    return _row(row)


@router.post(
    "/{session_id}/thresholds/unfreeze",
    response_model=ThresholdRow,
    summary="Let the session's threshold adaptation learn again from its next bar (audited)",
    responses={409: {"description": "the session does not adapt, is not frozen, or is stopped or finished"}},
)
def unfreeze_threshold(session_id: SessionId, body: FreezeIn, principal: Trader, ctx: Context) -> ThresholdRow:
    owned_session(ctx, principal, session_id)
    with ctx.store.transaction() as db:
        row = set_frozen(db, session_id, frozen=False, reason=body.reason, actor=principal.actor)
    return _row(row)
